# frozen_string_literal: true

require_relative '../../domain_helper'

class PromotionTest < Minitest::Test
  Promotion = ForemanPvc::Rollout::Promotion

  def test_automatic_starts_the_next_wave
    assert_equal :start_next, Promotion.new('automatic').after_pass(last_wave: false)
  end

  def test_approved_waits_for_an_approval
    promotion = Promotion.new('approved')
    assert_equal :await_approval, promotion.after_pass(last_wave: false)
    assert_equal :start_next, promotion.after_pass(last_wave: false, approved: true)
  end

  def test_the_last_wave_completes_either_way
    assert_equal :complete, Promotion.new('approved').after_pass(last_wave: true)
    assert_equal :complete, Promotion.new(:automatic).after_pass(last_wave: true)
  end

  def test_unknown_modes_are_refused
    assert_raises(ForemanPvc::Rollout::InvalidError) { Promotion.new('yolo') }
  end
end
