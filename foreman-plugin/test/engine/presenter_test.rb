# frozen_string_literal: true

require 'test_helper'

# What the API answers for a rollout (the controller renders exactly this).
class PresenterTest < ActiveSupport::TestCase
  T0 = Time.utc(2026, 11, 27, 12, 0, 0)

  test 'detail: settings, waves with per-host outcomes and counts, history, and what may happen next' do
    r = ForemanPvc::StagedRollout.create!(name: 'web', search: 'hostgroup = web', waves: '1, 100%', created_by: 'alice',
                                          promotion: 'approved')
    wave = r.wave_records.create!(position: 0, state: 'active', flag_set_at: T0, started_at: T0)
    wave.wave_hosts.create!(rollout: r, host_id: 7, hostname: 'a.example.com', position: 1, outcome: 'failed',
                            reason: '2 resources failed', report_id: 99)
    r.fire!(:start, by: 'alice', at: T0)
    json = JSON.parse(ForemanPvc::RolloutPresenter.new(r.reload).detail.to_json)
    assert_equal %w[web running approved update_flag], json.values_at('name', 'state', 'promotion', 'flag_name')
    assert_equal %w[pause abort refresh], json['commands']
    assert_equal '1, 100%', json['waves'], 'the spec is not hidden by the progress'
    assert_equal 1, json['wave_progress'].first['number']
    assert_equal({ 'host_id' => 7, 'name' => 'a.example.com', 'outcome' => 'failed', 'reason' => '2 resources failed',
                   'report_id' => 99 }, json['wave_progress'].first['hosts'].first)
    assert_equal 1, json['wave_progress'].first['counts']['failed']
    assert_equal [%w[start draft running alice]], json['transitions'].map { |t|
                                                    t.values_at('event', 'from', 'to', 'by')
                                                  }
  end

  test 'summary leaves the hosts and history out (list pages stay small)' do
    r = ForemanPvc::StagedRollout.create!(name: 'x', search: 's', waves: '1, 100%', created_by: 'alice')
    summary = ForemanPvc::RolloutPresenter.new(r).summary
    refute summary.key?(:transitions)
    assert_equal '1, 100%', summary[:waves]
    assert_equal %w[start abort], summary[:commands]
  end
end
