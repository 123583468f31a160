# frozen_string_literal: true

# Loads the rollout domain alone: these tests prove it needs neither Rails
# nor Foreman (see no_rails_test.rb).
$LOAD_PATH.unshift File.expand_path('../lib', __dir__)
require 'foreman_pvc/rollout'

# What the domain pulled in, noted before minitest loads its plugins (the
# Rails one defines ::Rails whatever the code under test does).
DOMAIN_LOADED = { rails: defined?(::Rails), active_support: defined?(::ActiveSupport),
                  active_record: defined?(::ActiveRecord) }.freeze

require 'minitest/autorun'

module DomainHelper
  T0 = Time.utc(2026, 11, 27, 12, 0, 0)

  def hosts(count, domain = 'example.com')
    (1..count).map { |i| format('web%<i>03d.%<domain>s', i: i, domain: domain) }
  end
end
