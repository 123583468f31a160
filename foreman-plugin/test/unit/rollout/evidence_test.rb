# frozen_string_literal: true

require_relative '../../domain_helper'

class EvidenceTest < Minitest::Test
  include DomainHelper
  Report = ForemanPvc::Rollout::Report
  Evidence = ForemanPvc::Rollout::Evidence

  def setup
    @evidence = Evidence.new(flag_set_at: T0, settle_secs: 10, offline_after_secs: 3600)
    @now = T0 + 600
  end

  DEFAULTS = { started: T0 + 60, cached: 'not_used', exit_code: 2, failed: 0, disabled: false, id: 1 }.freeze

  def report(**given)
    r = DEFAULTS.merge(given)
    Report.new(id: r[:id], host: 'web001.example.com', started_at: r[:started], cached_catalog_status: r[:cached],
               exit_code: r[:exit_code], failed_resources: r[:failed], puppet_disabled: r[:disabled])
  end

  def classify(reports, last_seen: @now - 60, known: true)
    @evidence.classify(reports: reports, last_seen_at: last_seen, now: @now, known: known)
  end

  def test_a_fresh_catalog_compiled_after_the_flag_is_done
    outcome = classify([report(exit_code: 0, id: 42)])
    assert_predicate outcome, :ok?
    assert_equal 42, outcome.report_id
    assert_predicate classify([report(exit_code: 2)]), :ok?
  end

  def test_a_run_started_before_the_flag_or_within_the_settle_time_proves_nothing
    assert_predicate classify([report(started: T0 - 30)]), :pending?
    assert_predicate classify([report(started: T0 + 5)]), :pending?
    assert_predicate classify([report(started: T0 + 10)]), :ok?
  end

  def test_a_failure_before_the_flag_is_not_held_against_the_host
    assert_predicate classify([report(started: T0 - 30, exit_code: 1)]), :pending?
  end

  def test_failed_compile_failed_resources_and_cached_fallback_are_failures
    compile = classify([report(exit_code: 1, failed: nil)])
    assert_predicate compile, :failed?
    assert_match(/compile/, compile.reason)
    resources = classify([report(exit_code: 6, failed: 3)])
    assert_predicate resources, :failed?
    assert_equal '3 resources failed', resources.reason
    assert_predicate classify([report(exit_code: 4, failed: nil)]), :failed?
    assert_predicate classify([report(exit_code: 0, failed: 1)]), :failed?
    fallback = classify([report(cached: 'on_failure', exit_code: 0)])
    assert_predicate fallback, :failed?
    assert_match(/cached catalog/, fallback.reason)
    assert_predicate classify([report(exit_code: nil)]), :failed?
  end

  def test_a_cached_run_on_purpose_is_neither_evidence_nor_failure
    assert_predicate classify([report(cached: 'explicitly_requested', exit_code: 0)]), :pending?
    # and it does not hide the fresh run before it
    assert_predicate classify([report(started: T0 + 60), report(started: T0 + 120, cached: 'explicitly_requested')]),
                     :ok?
  end

  def test_a_report_without_a_catalog_status_cannot_prove_a_fresh_catalog
    outcome = classify([report(cached: nil, exit_code: 0)])
    assert_predicate outcome, :pending?
    assert_match(/does not say/, outcome.reason)
  end

  def test_the_latest_relevant_run_decides
    assert_predicate classify([report(started: T0 + 60, exit_code: 1), report(started: T0 + 300, exit_code: 0)]), :ok?
    assert_predicate classify([report(started: T0 + 300, exit_code: 1), report(started: T0 + 60, exit_code: 0)]),
                     :failed?
  end

  def test_puppet_disabled_is_unreachable_not_pending
    outcome = classify([report(cached: nil, exit_code: 1, failed: nil, disabled: true)])
    assert_predicate outcome, :unreachable?
    assert_match(/disabled/, outcome.reason)
  end

  def test_offline_hosts_are_unreachable_and_recent_ones_pending
    assert_predicate classify([], last_seen: @now - 3599), :pending?
    offline = classify([], last_seen: @now - 3601)
    assert_predicate offline, :unreachable?
    assert_match(/offline: last seen/, offline.reason)
    assert_predicate classify([], last_seen: nil), :unreachable?
    assert_equal 'unknown to the bridge', classify([], known: false).reason
  end

  def test_a_report_beats_an_old_last_seen
    assert_predicate classify([report], last_seen: @now - 86_400), :ok?
  end

  def test_it_needs_the_flag_time
    assert_raises(ForemanPvc::Rollout::InvalidError) { Evidence.new(flag_set_at: nil) }
  end
end
