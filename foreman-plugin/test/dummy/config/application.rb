# frozen_string_literal: true

# A bare Rails app that loads the engine the way Foreman does (bundler.d
# requires the gem), without Foreman: what the plugin's CI can boot.
require_relative 'boot'

require 'rails'
require 'active_record/railtie'
require 'active_job/railtie'
require 'action_controller/railtie'
require 'action_view/railtie'

require 'foreman_pvc'

module Dummy
  class Application < Rails::Application
    config.load_defaults 6.1
    config.root = File.expand_path('..', __dir__)
    config.eager_load = false
    config.active_job.queue_adapter = :test
    config.logger = Logger.new(nil)
    config.active_support.deprecation = :raise
    # The plugin's migrations are run by test_helper.rb; there is no schema file.
    config.active_record.maintain_test_schema = false
  end
end
