# frozen_string_literal: true

require_relative '../../domain_helper'

class WaveTimeoutTest < Minitest::Test
  include DomainHelper
  Timeout = ForemanPvc::Rollout::WaveTimeout

  def test_expires_at_the_deadline
    timeout = Timeout.new(3600)
    assert_equal T0 + 3600, timeout.deadline(T0)
    refute timeout.expired?(T0, T0 + 3599)
    assert timeout.expired?(T0, T0 + 3600)
  end

  def test_the_converge_deadline_leaves_room_for_the_run_and_its_report
    assert_equal 1800, Timeout.new(3600).converge_within
    assert_equal 30, Timeout.new(60).converge_within
  end

  def test_bounds_and_types
    assert_equal 600, Timeout.new('600').secs
    [59, (7 * 24 * 3600) + 1, 'soon', nil, 1.5].each do |bad|
      assert_raises(ForemanPvc::Rollout::InvalidError, bad.inspect) { Timeout.new(bad) }
    end
  end
end
