# frozen_string_literal: true

# Creates the bridge's `pvc` schema from the bridge's own migrations (the
# repository's bridge/), so the report adapter is tested against the real
# table definitions, not a copy that could drift.
module BridgeSchema
  MIGRATIONS = %w[0001_scheduling.sql 0002_writes.sql 0003_forwarding.sql].freeze
  DIR = File.expand_path('../../../bridge/src/store/pvc/migrations', __dir__)

  def self.ensure!(connection)
    return if connection.select_value("SELECT to_regclass('pvc.reports')")

    connection.transaction do
      connection.execute('CREATE SCHEMA IF NOT EXISTS pvc')
      MIGRATIONS.each do |name|
        path = File.join(DIR, name)
        raise "the bridge's migration #{path} is missing (run the tests from the repository)" unless File.exist?(path)

        connection.execute(File.read(path))
      end
    end
  end

  # A report stored as the bridge stores one (its own function).
  REPORT_DEFAULTS = { exit_code: 0, cached: 'not_used', resources: nil, log_tail: '' }.freeze

  def self.report!(connection, certname:, started:, **given)
    r = REPORT_DEFAULTS.merge(given)
    binds = [certname, r[:exit_code], started, r[:resources]&.to_json, r[:cached], r[:log_tail]]
    connection.select_value(<<~SQL.squish, 'store report', binds)
      SELECT report_id FROM pvc.store_report($1, NULL, 'converge', 'full', $2, $3, 12.5, $4::jsonb, $5, '{}', $6)
    SQL
  end

  # A contact (facts or report upload) as the bridge records it.
  def self.checkin!(connection, certname, at)
    connection.select_value("SELECT pvc.checkin($1, $2, 'facts')", 'checkin', [certname, at])
  end
end
