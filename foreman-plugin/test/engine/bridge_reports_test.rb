# frozen_string_literal: true

require 'test_helper'

# The report adapter against the bridge's own tables and functions.
class BridgeReportsTest < ActiveSupport::TestCase
  T0 = Time.utc(2026, 11, 27, 12, 0, 0)

  def only(list)
    assert_equal 1, list.size, list.inspect
    list.first
  end

  setup do
    @connection = ActiveRecord::Base.connection
    @reports = ForemanPvc::Adapters::BridgeReports.new(@connection)
  end

  test 'reads the fields the evidence rules need' do
    id = BridgeSchema.report!(@connection, certname: 'a.example.com', started: T0 + 30, exit_code: 6,
                                           cached: 'not_used', resources: { failed: 3, changed: 1, total: 9 })
    report = only(@reports.since(['a.example.com'], T0).fetch('a.example.com'))
    assert_equal id.to_i, report.id.to_i
    assert_equal [T0 + 30, 'not_used', 6, 3, false],
                 [report.started_at.utc, report.cached_catalog_status, report.exit_code, report.failed_resources,
                  report.puppet_disabled]
  end

  test 'only runs started since the time, only the hosts asked for' do
    BridgeSchema.report!(@connection, certname: 'a.example.com', started: T0 - 1)
    BridgeSchema.report!(@connection, certname: 'a.example.com', started: T0)
    BridgeSchema.report!(@connection, certname: 'b.example.com', started: T0 + 5)
    BridgeSchema.report!(@connection, certname: 'c.example.com', started: T0 + 5)
    found = @reports.since(['a.example.com', 'b.example.com'], T0)
    assert_equal %w[a.example.com b.example.com], found.keys.sort
    assert_equal [T0], found['a.example.com'].map { |r| r.started_at.utc }
  end

  test 'a run Puppet refused because it is disabled is marked so; other exits are not' do
    disabled = "Notice: Skipping run of Puppet configuration client; administratively disabled (Reason: 'x');"
    BridgeSchema.report!(@connection, certname: 'd.example.com', started: T0 + 1, cached: nil, exit_code: 1,
                                      log_tail: disabled)
    BridgeSchema.report!(@connection, certname: 'e.example.com', started: T0 + 1, cached: nil, exit_code: 1,
                                      log_tail: 'Error: Could not retrieve catalog from remote server')
    found = @reports.since(%w[d.example.com e.example.com], T0)
    assert only(found['d.example.com']).puppet_disabled
    refute only(found['e.example.com']).puppet_disabled
    assert_nil only(found['e.example.com']).failed_resources
  end

  test 'last contact per host from the check-ins' do
    BridgeSchema.checkin!(@connection, 'a.example.com', T0)
    BridgeSchema.checkin!(@connection, 'a.example.com', T0 + 60)
    seen = @reports.last_seen(['a.example.com', 'never.example.com'])
    assert_equal({ 'a.example.com' => T0 + 60 }, seen.transform_values(&:utc))
  end

  test "an agent's run report is contact too, the later of the two counts" do
    id = BridgeSchema.report!(@connection, certname: 'r.example.com', started: T0)
    received = @connection.select_value('SELECT received FROM pvc.reports WHERE id = $1', 'received', [id])
    received = Time.parse(received) if received.is_a?(String)
    BridgeSchema.checkin!(@connection, 'b.example.com', received + 3600)
    BridgeSchema.report!(@connection, certname: 'b.example.com', started: T0)
    seen = @reports.last_seen(%w[r.example.com b.example.com never.example.com]).transform_values(&:utc)
    assert_equal({ 'r.example.com' => received.utc, 'b.example.com' => received.utc + 3600 }, seen)
  end

  test 'names are passed as data, whatever they contain' do
    odd = %(x",y\\z'; DROP TABLE hosts; --)
    BridgeSchema.report!(@connection, certname: odd, started: T0 + 1)
    assert_equal [odd], @reports.since([odd, 'a.example.com'], T0).keys
    assert @connection.table_exists?('hosts')
    assert_equal({}, @reports.since([], T0))
  end
end
