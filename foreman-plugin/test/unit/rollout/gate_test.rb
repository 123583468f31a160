# frozen_string_literal: true

require_relative '../../domain_helper'

class GateTest < Minitest::Test
  Gate = ForemanPvc::Rollout::Gate
  Outcome = ForemanPvc::Rollout::HostOutcome

  def outcomes(ok: 0, failed: 0, pending: 0, unreachable: 0)
    { ok: ok, failed: failed, pending: pending, unreachable: unreachable }.flat_map do |status, count|
      Array.new(count) { Outcome.new(status, nil, nil) }
    end
  end

  def test_all_ok_passes
    assert_predicate Gate.new(0).evaluate(outcomes(ok: 5), timed_out: false), :pass?
  end

  def test_pending_hosts_make_it_wait_until_the_timeout
    waiting = Gate.new(0).evaluate(outcomes(ok: 4, pending: 1), timed_out: false)
    assert_predicate waiting, :wait?
    assert_equal '1 of 5 hosts have not reported yet', waiting.reason
  end

  def test_at_the_timeout_silent_hosts_count_as_failed
    decision = Gate.new(20).evaluate(outcomes(ok: 3, pending: 2), timed_out: true)
    assert_predicate decision, :pause?
    assert_match(/2 of 5 hosts failed/, decision.reason)
    assert_match(/wave timeout/, decision.reason)
    assert_predicate Gate.new(40).evaluate(outcomes(ok: 3, pending: 2), timed_out: true), :pass?
  end

  def test_the_threshold_is_a_percentage_of_the_wave_rounded_down
    gate = Gate.new(10)
    assert_equal 0, gate.allowed_failures(9)
    assert_equal 1, gate.allowed_failures(10)
    assert_predicate gate.evaluate(outcomes(ok: 9, failed: 1), timed_out: false), :pass?
    paused = gate.evaluate(outcomes(ok: 8, failed: 2), timed_out: false)
    assert_predicate paused, :pause?
    assert_equal '2 of 10 hosts failed, above the threshold of 10% (at most 1)', paused.reason
  end

  def test_it_pauses_as_soon_as_failures_pass_the_threshold
    assert_predicate Gate.new(0).evaluate(outcomes(failed: 1, pending: 99), timed_out: false), :pause?
    assert_predicate Gate.new(5).evaluate(outcomes(failed: 5, pending: 95), timed_out: false), :wait?
  end

  def test_unreachable_hosts_neither_fail_nor_stall_a_wave
    assert_predicate Gate.new(0).evaluate(outcomes(ok: 3, unreachable: 2), timed_out: false), :pass?
  end

  def test_a_wave_where_nobody_ran_does_not_pass
    decision = Gate.new(100).evaluate(outcomes(unreachable: 1), timed_out: false)
    assert_predicate decision, :pause?
    assert_match(/no host/, decision.reason)
  end

  def test_threshold_is_validated
    [-1, 101, 'ten', nil].each do |bad|
      assert_raises(ForemanPvc::Rollout::InvalidError, bad.inspect) { Gate.new(bad) }
    end
  end
end
