# frozen_string_literal: true

require 'test_helper'

# Rollouts end to end on PostgreSQL: the plugin's models, the runner, and
# the report adapter reading the bridge's own tables (written with the
# bridge's own SQL functions). Foreman's search, its host parameters and
# the bridge's HTTP API are the fakes of test/support/fakes.rb.
class RolloutRunnerTest < ActiveSupport::TestCase
  T0 = Time.utc(2026, 11, 27, 12, 0, 0)
  # What pvc-agent reports when `puppet agent --disable` is in force.
  DISABLED = "Notice: Skipping run of Puppet configuration client; administratively disabled (Reason: 'maint');"
  HOSTS = (1..10).map { |i| Fakes::Host.new(100 + i, format('web%02d.example.com', i)) }.freeze

  setup do
    @clock = Fakes::Clock.new(T0)
    @flags = Fakes::Flags.new
    @bridge = Fakes::Bridge.new
    @directory = Fakes::Directory.new('hostgroup = web' => HOSTS, 'name = nothing' => [])
    @connection = ActiveRecord::Base.connection
    # every host is alive: it uploaded facts a minute ago
    HOSTS.each { |h| BridgeSchema.checkin!(@connection, h.name, T0 - 60) }
  end

  def rollout(**attrs)
    ForemanPvc::StagedRollout.create!({ name: "r#{SecureRandom.hex(3)}", search: 'hostgroup = web',
                                        waves: '1, 50%, 100%', wave_timeout: 3600, failure_threshold: 0,
                                        created_by: 'alice' }.merge(attrs))
  end

  def runner(record, actor: 'alice')
    ports = ForemanPvc::RolloutRunner::Ports.new(directory: @directory, flags: @flags, bridge: @bridge,
                                                 reports: ForemanPvc::Adapters::BridgeReports.new(@connection))
    ForemanPvc::RolloutRunner.new(record, actor: actor, ports: ports, clock: @clock,
                                          evidence: { settle_secs: 10, offline_after_secs: 3600 })
  end

  def wave_names(record, position)
    record.wave_records.reload.detect { |w| w.position == position }.wave_hosts.map(&:hostname)
  end

  # Every host of the wave reports a run as the bridge stores it, `after`
  # seconds after the wave's flag; all of them were seen recently.
  def report_wave(record, position, after: 60, **report)
    wave = record.wave_records.reload.detect { |w| w.position == position }
    wave.wave_hosts.each do |host|
      BridgeSchema.report!(@connection, certname: host.hostname, started: wave.flag_set_at + after, **report)
      BridgeSchema.checkin!(@connection, host.hostname, wave.flag_set_at + after)
    end
  end

  def id_of(name)
    HOSTS.detect { |h| h.name == name }.id
  end

  test 'automatic promotion: canary, then the waves, flagging and converging each, to completion' do
    r = rollout
    runner(r).start!
    assert_equal 'running', r.reload.state
    assert_equal [1, 4, 5], r.wave_records.map { |w| w.wave_hosts.size }
    assert_equal 10, r.host_count
    canary = wave_names(r, 0)
    assert_equal [[:set, [id_of(canary.first)], 'update_flag', true]], @flags.calls
    assert_equal [[canary, 1800]], @bridge.requests

    @clock.advance(30)
    assert_predicate runner(r).tick!, :wait?
    report_wave(r, 0, cached: 'not_used', exit_code: 2, resources: { failed: 0, changed: 3 })
    @clock.advance(120)
    assert_predicate runner(r).tick!, :pass?
    assert_equal %w[passed active pending], r.wave_records.reload.map(&:state)
    assert_equal 'ok', r.wave_records.first.wave_hosts.first.outcome
    assert_equal 2, @flags.calls.size
    assert_equal wave_names(r, 1), @bridge.requests.last.first

    [1, 2].each do |position|
      report_wave(r, position)
      @clock.advance(120)
      runner(r).tick!
    end
    r.reload
    assert_equal 'completed', r.state
    assert_equal HOSTS.map(&:id).sort, @flags.values.keys.map(&:first).sort
    assert_equal [%w[start draft running alice], %w[complete running completed system]],
                 r.transitions.map { |t| [t.event, t.from_state, t.to_state, t.user_login] }
  end

  test 'waves are the same for the same hosts, whatever order the search returns' do
    a = rollout
    runner(a).start!
    @directory = Fakes::Directory.new('hostgroup = web' => HOSTS.reverse)
    b = rollout
    runner(b).start!
    assert_equal [0, 1, 2].map { |p| wave_names(a, p) }, [0, 1, 2].map { |p| wave_names(b, p) }
  end

  test 'a failed canary pauses the rollout, says why, and flags nobody else' do
    r = rollout
    runner(r).start!
    report_wave(r, 0, exit_code: 6, resources: { failed: 2 })
    @clock.advance(120)
    assert_predicate runner(r).tick!, :pause?
    r.reload
    assert_equal 'paused', r.state
    assert_equal 'wave 1: 1 of 1 hosts failed, above the threshold of 0% (at most 0)', r.status_reason
    assert_equal %w[failed pending pending], r.wave_records.map(&:state)
    assert_equal '2 resources failed', r.wave_records.first.wave_hosts.first.reason
    last = r.transitions.last
    assert_equal %w[pause system], [last.event, last.user_login]
    assert_equal 1, @flags.calls.size
    assert_nil runner(r).tick!, 'a paused rollout does nothing on a tick'
  end

  test 'resuming after a failed gate is an override by someone, and the next wave starts' do
    r = rollout
    runner(r).start!
    report_wave(r, 0, cached: 'on_failure', exit_code: 0)
    @clock.advance(120)
    runner(r).tick!
    assert_equal 'paused', r.reload.state
    runner(r, actor: 'bob').resume!
    r.reload
    wave = r.wave_records.first
    assert_equal %w[overridden bob], [wave.state, wave.approved_by]
    assert_equal 1, r.current_wave
    assert_equal 'active', r.wave_records.second.state
    assert_equal %w[resume bob], [r.transitions.last.event, r.transitions.last.user_login]
  end

  test 'approved promotion waits for someone to approve each wave' do
    r = rollout(promotion: 'approved')
    runner(r).start!
    report_wave(r, 0)
    @clock.advance(120)
    runner(r).tick!
    r.reload
    assert r.awaiting_approval
    assert_equal 0, r.current_wave
    assert_equal 1, @flags.calls.size
    runner(r, actor: 'carol').promote!
    r.reload
    refute r.awaiting_approval
    assert_equal 1, r.current_wave
    assert_equal 'carol', r.wave_records.first.approved_by
    assert_equal 2, @flags.calls.size
    assert_raises(ForemanPvc::RolloutRunner::Error) { runner(r).promote! }
  end

  test 'runs from before the flag, and cached runs on purpose, are not evidence' do
    r = rollout
    runner(r).start!
    wave = r.wave_records.first
    host = wave.wave_hosts.first.hostname
    BridgeSchema.report!(@connection, certname: host, started: wave.flag_set_at - 5)
    BridgeSchema.report!(@connection, certname: host, started: wave.flag_set_at + 3)
    BridgeSchema.report!(@connection, certname: host, started: wave.flag_set_at + 60, cached: 'explicitly_requested')
    BridgeSchema.checkin!(@connection, host, wave.flag_set_at + 60)
    @clock.advance(120)
    assert_predicate runner(r).tick!, :wait?
    assert_equal 'pending', wave.wave_hosts.first.reload.outcome
  end

  test 'hosts whose converged run came too early are asked for again once the bridge is done' do
    r = rollout(promotion: 'approved')
    runner(r).start!
    wave = r.wave_records.first
    host = wave.wave_hosts.first.hostname
    assert_equal [[[host], 1800]], @bridge.requests
    # the bridge ran it 3 s after the flag, inside the settle window
    BridgeSchema.report!(@connection, certname: host, started: wave.flag_set_at + 3)
    @clock.advance(5)
    @bridge.done = true
    assert_predicate runner(r).tick!, :wait?
    assert_equal 1, @bridge.requests.size, 'not before the settle window is over'
    @clock.advance(60)
    @bridge.done = false
    assert_predicate runner(r).tick!, :wait?
    assert_equal 1, @bridge.requests.size, 'not while the request is still running'
    @bridge.done = true
    assert_predicate runner(r).tick!, :wait?
    assert_equal [[host], (3600 - 65) / 2], @bridge.requests.last, 'half the time left to the wave timeout'
    assert_equal 2, wave.reload.converge_id
    report_wave(r, 0)
    assert_predicate runner(r).tick!, :pass?
    assert_equal 2, @bridge.requests.size
  end

  test 'asked again near the wave timeout, the bridge gets half the time left' do
    r = rollout
    runner(r).start!
    @bridge.done = true
    @clock.advance(3000)
    runner(r).tick!
    assert_equal 300, @bridge.requests.last.last
  end

  test 'a wave timeout turns silent hosts into failures and pauses' do
    r = rollout
    runner(r).start!
    BridgeSchema.checkin!(@connection, wave_names(r, 0).first, T0 + 1800) # alive, just silent
    @clock.advance(3599)
    assert_predicate runner(r).tick!, :wait?
    @clock.advance(1)
    decision = runner(r).tick!
    assert_predicate decision, :pause?
    assert_match(/wave timeout/, r.reload.status_reason)
  end

  test 'unreachable hosts are shown as such and do not hold the wave' do
    @directory = Fakes::Directory.new('hostgroup = web' => HOSTS.first(4))
    r = rollout(waves: '4, 100%')
    names = HOSTS.first(4).map(&:name)
    @bridge.unknown = [names[0]]
    runner(r).start!
    flag_at = r.wave_records.first.flag_set_at
    @clock.advance(7200 - 120) # names[1] was last seen at T0 - 60: offline by now
    BridgeSchema.report!(@connection, certname: names[2], started: flag_at + 60, cached: nil, exit_code: 1,
                                      log_tail: DISABLED)
    BridgeSchema.checkin!(@connection, names[2], flag_at + 60)
    BridgeSchema.report!(@connection, certname: names[3], started: flag_at + 60)
    BridgeSchema.checkin!(@connection, names[3], flag_at + 60)
    @clock.advance(120)
    assert_predicate runner(r).tick!, :pass?
    outcomes = r.wave_records.first.wave_hosts.to_h { |h| [h.hostname, [h.outcome, h.reason]] }
    assert_equal ['unreachable', 'unknown to the bridge'], outcomes[names[0]]
    assert_equal 'unreachable', outcomes[names[1]].first
    assert_match(/offline/, outcomes[names[1]].last)
    assert_equal ['unreachable', 'Puppet is disabled on the host'], outcomes[names[2]]
    assert_equal 'ok', outcomes[names[3]].first
    assert_equal 'completed', r.reload.state
  end

  test 'abort can take the flag off every host that got it, and only those' do
    r = rollout
    runner(r).start!
    report_wave(r, 0)
    @clock.advance(120)
    runner(r).tick!
    runner(r, actor: 'dave').abort!(remove_flag: true, reason: 'bad change')
    r.reload
    assert_equal 'aborted', r.state
    flagged = (wave_names(r, 0) + wave_names(r, 1)).map { |n| id_of(n) }.sort
    assert_equal [:remove, flagged, 'update_flag'], @flags.calls.last
    assert_empty @flags.values
    assert_equal ['abort', 'dave', 'bad change'],
                 [r.transitions.last.event, r.transitions.last.user_login, r.transitions.last.reason]
    assert_raises(ForemanPvc::Rollout::TransitionError) { runner(r).resume! }
  end

  test 'abort without removing the flag leaves the parameters alone' do
    r = rollout
    runner(r).start!
    runner(r).abort!(remove_flag: false)
    assert_equal [:set], @flags.calls.map(&:first)
  end

  test 'a bridge that cannot be reached is shown on the wave, and the wave goes on' do
    @bridge.failure = 'bridge https://bridge:8443: Errno::ECONNREFUSED'
    r = rollout
    runner(r).start!
    wave = r.wave_records.first
    assert_equal 'active', wave.state
    assert_match(/ECONNREFUSED/, wave.converge_error)
    assert_nil wave.converge_id
  end

  test 'a search that matches no host leaves the rollout a draft' do
    r = rollout(search: 'name = nothing')
    error = assert_raises(ForemanPvc::RolloutRunner::Error) { runner(r).start! }
    assert_match(/matches no host/, error.message)
    assert_equal 'draft', r.reload.state
    assert_empty r.wave_records
  end

  test 'starting twice is refused' do
    r = rollout
    runner(r).start!
    assert_raises(ForemanPvc::RolloutRunner::Error) { runner(r).start! }
    assert_equal 1, @flags.calls.size
  end
end
