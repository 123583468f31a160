# frozen_string_literal: true

require 'test_helper'

class ModelsTest < ActiveSupport::TestCase
  T0 = Time.utc(2026, 11, 27, 12, 0, 0)

  def rollout(**attrs)
    ForemanPvc::StagedRollout.new({ name: 'web', search: 'hostgroup = web', waves: '1, 100%', created_by: 'alice' }
                                    .merge(attrs))
  end

  test 'a rollout refuses what the domain refuses' do
    assert_predicate rollout, :valid?
    { waves: '1, 50%', failure_threshold: 150, wave_timeout: 10, state: 'limbo', promotion: 'later', search: '' }
      .each do |field, bad|
      refute_predicate rollout(field => bad), :valid?, "#{field}=#{bad.inspect}"
    end
    rollout.save!
    refute_predicate rollout, :valid?, 'names are unique'
  end

  test 'fire! records each transition with who, when and why, in order' do
    r = rollout
    r.save!
    r.fire!(:start, by: 'alice', at: T0)
    r.fire!(:pause, by: 'system', at: T0 + 60, reason: 'wave 1: too many failures')
    r.reload
    assert_equal 'paused', r.state
    assert_equal 'wave 1: too many failures', r.status_reason
    assert_equal [['start', 'alice', T0], ['pause', 'system', T0 + 60]],
                 r.transitions.map { |t| [t.event, t.user_login, t.created_at.utc] }
    assert_raises(ForemanPvc::Rollout::TransitionError) { r.fire!(:complete, by: 'alice', at: T0) }
    assert_equal 'paused', r.reload.state
  end

  test 'what a person may do follows the state and the approval' do
    r = rollout
    r.save!
    assert_equal %w[start abort], r.available_commands
    r.fire!(:start, by: 'alice', at: T0)
    assert_equal %w[pause abort refresh], r.available_commands
    r.update!(awaiting_approval: true)
    assert_equal %w[pause abort promote refresh], r.available_commands
    r.fire!(:abort, by: 'alice', at: T0)
    assert_empty r.available_commands
  end

  test 'transitions cannot be edited after the fact' do
    r = rollout
    r.save!
    t = r.fire!(:start, by: 'alice', at: T0) && r.transitions.first
    assert_raises(ActiveRecord::ReadOnlyRecord) { t.update!(user_login: 'mallory') }
  end

  test 'deleting a rollout removes its waves, hosts and history' do
    r = rollout
    r.save!
    wave = r.wave_records.create!(position: 0)
    wave.wave_hosts.create!(rollout: r, host_id: 1, hostname: 'a.example.com', position: 1)
    r.fire!(:start, by: 'alice', at: T0)
    r.destroy!
    assert_equal [0, 0, 0], [ForemanPvc::Wave, ForemanPvc::WaveHost, ForemanPvc::Transition].map(&:count)
  end

  test 'a host appears once per rollout' do
    r = rollout
    r.save!
    wave = r.wave_records.create!(position: 0)
    wave.wave_hosts.create!(rollout: r, host_id: 1, hostname: 'a.example.com', position: 1)
    assert_raises(ActiveRecord::RecordNotUnique) do
      wave.wave_hosts.create!(rollout: r, host_id: 1, hostname: 'a.example.com', position: 2)
    end
  end

  test 'wave counts name every outcome' do
    r = rollout
    r.save!
    wave = r.wave_records.create!(position: 0)
    %w[ok ok failed].each_with_index do |outcome, i|
      wave.wave_hosts.create!(rollout: r, host_id: i, hostname: "h#{i}", position: i, outcome: outcome)
    end
    assert_equal({ 'pending' => 0, 'ok' => 2, 'failed' => 1, 'unreachable' => 0 }, wave.counts)
  end
end
