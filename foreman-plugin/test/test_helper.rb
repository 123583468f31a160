# frozen_string_literal: true

# Boots the dummy app with the engine, runs the plugin's migrations on the
# PostgreSQL database of DATABASE_URL (test.sh starts one), then loads
# Rails' test support. Each test runs in a rolled-back transaction.
ENV['RAILS_ENV'] = 'test'
ENV['MT_NO_PLUGINS'] = '1'
require_relative 'dummy/config/environment'

ActiveRecord::Migration.verbose = false
ActiveRecord::MigrationContext.new(Rails.application.config.paths['db/migrate'].to_a,
                                   ActiveRecord::SchemaMigration).migrate
require_relative 'support/bridge_schema'
BridgeSchema.ensure!(ActiveRecord::Base.connection)
require 'rails/test_help'
require 'webmock/minitest'
require 'mocha/minitest'
require_relative 'support/fakes'
