# frozen_string_literal: true

require 'test_helper'

# Foreman's apipie initializer passes every documentation string through
# `_(str) % substitutions` (a Hash), and does so for the API checksum on
# every API request: one bare `%` in a description makes all of Foreman's
# API answer 500 ("malformed format string"). A literal percent sign must
# be written `%%`.
class ApipieStringsTest < ActiveSupport::TestCase
  SUBSTITUTIONS = { operatingsystem_families: 'Debian, Redhat', providers: 'Libvirt' }.freeze

  def self.doc_strings
    Dir[ForemanPvc::Engine.root.join('app/controllers/api/**/*.rb').to_s].flat_map do |file|
      File.read(file).scan(/N_\(\s*'((?:[^'\\]|\\.)*)'\s*\)/).flatten.map { |s| [file, s.gsub("\\'", "'")] }
    end
  end

  test 'the API controller has documentation strings to check' do
    assert_operator self.class.doc_strings.size, :>=, 10
    assert(self.class.doc_strings.any? { |_, s| s.include?('%%') }, 'the waves description shows a percent sign')
  end

  test "every documentation string survives Foreman's apipie substitution" do
    self.class.doc_strings.each do |file, str|
      begin
        rendered = str % SUBSTITUTIONS
      rescue ArgumentError, KeyError => e
        flunk "#{File.basename(file)}: #{str.inspect} breaks Foreman's API: #{e.message}"
      end
      refute_includes rendered, '%%', str
    end
  end
end
