# frozen_string_literal: true

require 'foreman_pvc/version'
require 'foreman_pvc/rollout'
require 'foreman_pvc/adapters/bridge_client'
require 'foreman_pvc/adapters/bridge_reports'
require 'foreman_pvc/adapters/host_directory'
require 'foreman_pvc/adapters/host_flags'
require 'foreman_pvc/engine' if defined?(Rails::Engine)

module ForemanPvc
end
