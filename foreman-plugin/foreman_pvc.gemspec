# frozen_string_literal: true

require File.expand_path('lib/foreman_pvc/version', __dir__)

Gem::Specification.new do |s|
  s.name        = 'foreman_pvc'
  s.version     = ForemanPvc::VERSION
  s.license     = 'GPL-3.0-or-later'
  s.authors     = ['pvc contributors']
  s.email       = ['pvc@example.invalid']
  s.homepage    = 'https://github.com/johnj/pvc'
  s.summary     = 'Staged update_flag rollouts for Foreman, driven through pvc-bridge'
  # also update locale/gemspec.rb
  s.description = 'Turns a Puppet flag parameter on for a canary, then growing waves of hosts, ' \
                  'asks pvc-bridge to run them soon, and pauses by itself when runs fail.'

  s.files = Dir['{app,config,db,lib,locale}/**/*'] + ['README.md']
  s.required_ruby_version = '>= 2.7', '< 4'

  # Foreman finds its plugins (and their assets) by this marker.
  s.metadata = { 'is_foreman_plugin' => 'true', 'rubygems_mfa_required' => 'true' }

  s.add_development_dependency 'rake'
end
