# frozen_string_literal: true

require_relative '../../domain_helper'

class StateMachineTest < Minitest::Test
  include DomainHelper
  Machine = ForemanPvc::Rollout::StateMachine
  TransitionError = ForemanPvc::Rollout::TransitionError

  def test_the_whole_life_records_who_and_when
    machine = Machine.new
    machine.fire(:start, by: 'alice', at: T0)
    machine.fire(:pause, by: 'system', at: T0 + 60, reason: 'wave 1: 1 of 1 hosts failed')
    machine.fire(:resume, by: 'bob', at: T0 + 120)
    machine.fire(:complete, by: 'system', at: T0 + 180)
    assert_equal 'completed', machine.state
    assert_predicate machine, :final?
    assert_equal [%w[draft running alice], %w[running paused system], %w[paused running bob],
                  %w[running completed system]],
                 machine.history.map { |t| [t.from, t.to, t.by] }
    assert_equal [T0, T0 + 60, T0 + 120, T0 + 180], machine.history.map(&:at)
    assert_equal 'wave 1: 1 of 1 hosts failed', machine.history[1].reason
  end

  def test_every_event_outside_its_states_is_refused
    allowed = { start: %w[draft], pause: %w[running], resume: %w[paused], complete: %w[running],
                abort: %w[draft running paused] }
    Machine::STATES.each do |state|
      allowed.each do |event, from|
        machine = Machine.new(state)
        if from.include?(state)
          assert machine.can?(event), "#{event} from #{state}"
          machine.fire(event, by: 'alice', at: T0)
        else
          refute machine.can?(event), "#{event} from #{state}"
          error = assert_raises(TransitionError) { machine.fire(event, by: 'alice', at: T0) }
          assert_equal "cannot #{event} a #{state} rollout", error.message
          assert_equal state, machine.state
          assert_empty machine.history
        end
      end
    end
  end

  def test_final_states_allow_nothing
    assert_empty Machine.new('aborted').allowed_events
    assert_empty Machine.new('completed').allowed_events
    assert_equal %i[start abort], Machine.new('draft').allowed_events
  end

  def test_a_transition_needs_someone
    assert_raises(ForemanPvc::Rollout::InvalidError) { Machine.new.fire(:start, by: ' ', at: T0) }
    assert_raises(TransitionError) { Machine.new.fire(:explode, by: 'alice', at: T0) }
    assert_raises(ForemanPvc::Rollout::InvalidError) { Machine.new('limbo') }
  end
end
