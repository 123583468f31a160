# frozen_string_literal: true

require 'test_helper'
require_relative '../support/foreman_view_stubs'

# The pages rendered against real records (Foreman's own helpers stubbed):
# every line of each template runs, and what an operator must see is there.
class ViewRenderTest < ActiveSupport::TestCase
  T0 = Time.utc(2026, 11, 27, 12, 0, 0)

  def render(template, assigns)
    view_class = ActionView::Base.with_empty_template_cache
    # Foreman's views get the route proxies of every mounted engine
    # (foreman_pvc); the stubs' main_app comes first.
    view_class.include(ForemanPvc::Engine.routes.url_helpers, ForemanPvc::RolloutsHelper, ForemanViewStubs,
                       Rails.application.routes.mounted_helpers)
    lookup = ActionView::LookupContext.new([ForemanPvc::Engine.root.join('app/views').to_s])
    @view = view_class.new(lookup, assigns, nil)
    @view.define_singleton_method(:protect_against_forgery?) { false }
    # No controller here: the route proxies take the view as their context.
    @view.define_singleton_method(:_routes_context) { self }
    @view.render(template: template)
  end

  def rollout_with_progress
    r = ForemanPvc::StagedRollout.create!(name: 'ntp-v2', search: 'hostgroup = web', waves: '1, 100%',
                                          created_by: 'alice', failure_threshold: 5)
    canary = r.wave_records.create!(position: 0, state: 'failed', started_at: T0, flag_set_at: T0,
                                    gate_reason: '1 of 1 hosts failed, above the threshold of 5% (at most 0)')
    canary.wave_hosts.create!(rollout: r, host_id: 1, hostname: 'web01.example.com', position: 1, outcome: 'failed',
                              reason: 'the catalog failed; Puppet applied its cached catalog')
    rest = r.wave_records.create!(position: 1, converge_error: 'bridge URL "" is not http(s)')
    rest.wave_hosts.create!(rollout: r, host_id: 2, hostname: 'web02.example.com', position: 2)
    r.fire!(:start, by: 'alice', at: T0)
    r.fire!(:pause, by: 'system', at: T0 + 60, reason: 'wave 1: 1 of 1 hosts failed')
    r.update!(current_wave: 0, host_count: 2)
    r
  end

  test 'show: the state and why, each wave with its hosts and reports, the history, the allowed commands' do
    r = rollout_with_progress
    html = render('foreman_pvc/rollouts/show', rollout: r, waves: r.wave_records.includes(:wave_hosts),
                                               transitions: r.transitions)
    assert_includes html, 'wave 1: 1 of 1 hosts failed'
    assert_includes html, 'Wave 1'
    assert_includes html, 'Wave 2'
    assert_includes html, 'the catalog failed; Puppet applied its cached catalog'
    assert_includes html, 'href="/hosts/web01.example.com"'
    assert_includes html, '/config_reports?search=host+%3D+web01.example.com'
    assert_includes html, 'The bridge was not asked to run these hosts'
    assert_includes html, 'progress-bar-danger'
    assert_includes html, 'running → paused'
    # paused: resume and abort are offered, start and pause are not
    assert_includes html, %(action="/foreman_pvc/rollouts/#{r.id}/resume")
    assert_includes html, %(action="/foreman_pvc/rollouts/#{r.id}/abort")
    refute_includes html, %(action="/foreman_pvc/rollouts/#{r.id}/start")
    refute_includes html, %(action="/foreman_pvc/rollouts/#{r.id}/pause")
  end

  test 'show: a finished rollout has no next wave, whatever its promotion' do
    r = rollout_with_progress
    r.update!(promotion: 'approved')
    html = render('foreman_pvc/rollouts/show', rollout: r, waves: r.wave_records.includes(:wave_hosts),
                                               transitions: r.transitions)
    assert_includes html, 'waits for an approval'
    r.fire!(:abort, by: 'alice', at: T0 + 120, reason: 'stopped by hand')
    html = render('foreman_pvc/rollouts/show', rollout: r, waves: r.wave_records.includes(:wave_hosts),
                                               transitions: r.transitions)
    assert_includes html, 'none: the rollout is over'
    refute_includes html, 'waits for an approval'
  end

  test 'index: each rollout with its state and a link' do
    r = rollout_with_progress
    html = render('foreman_pvc/rollouts/index', rollouts: ForemanPvc::StagedRollout.all)
    assert_includes html, %(href="/foreman_pvc/rollouts/#{r.id}">ntp-v2</a>)
    assert_includes html, 'label-warning'
    # A long flag is cut with an ellipsis (its whole text in the title), not drawn over the next column.
    assert_includes html, '<td class="ellipsis" title="update_flag=true"><code>update_flag=true</code></td>'
    assert_equal 'Rollouts', @view.page_title
    assert_includes @view.title_actions_given.join, 'href="/foreman_pvc/rollouts/new"'
  end

  test 'new: the defaults filled in, and every error listed' do
    form = ForemanPvc::Rollout::Params.new.form_defaults.merge(flag_name: 'update_flag', failure_threshold: 0,
                                                               wave_timeout: 3600, search: 'id ^ (3, 5)')
    errors = { 'waves' => ['waves: the last step must be 100%'] }
    html = render('foreman_pvc/rollouts/new', form: form, errors: errors)
    assert_includes html, 'value="id ^ (3, 5)"'
    assert_includes html, 'value="1, 5%, 25%, 100%"'
    assert_includes html, 'Waves: waves: the last step must be 100%'
    assert_includes html, 'action="/foreman_pvc/rollouts"'
  end
end
