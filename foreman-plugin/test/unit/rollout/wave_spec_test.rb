# frozen_string_literal: true

require_relative '../../domain_helper'

class WaveSpecTest < Minitest::Test
  Spec = ForemanPvc::Rollout::WaveSpec
  Invalid = ForemanPvc::Rollout::InvalidError

  def test_parses_and_prints_canonically
    spec = Spec.parse(' 1,5% , 25%,100%')
    assert_equal '1, 5%, 25%, 100%', spec.to_s
    assert_equal 1, spec.canary
    assert_equal %i[count percent percent percent], spec.steps.map(&:kind)
  end

  def test_targets_round_percentages_up
    assert_equal [1, 2, 3], Spec.parse('1, 50%, 100%').targets(3)
    assert_equal [1, 3], Spec.parse('1, 20%, 100%').targets(3)
    assert_equal [1, 5, 10], Spec.parse('1, 41%, 100%').targets(10)
  end

  def test_rejections_name_the_problem
    {
      '' => 'at least',
      '1' => 'at least',
      '1, 50%' => 'last step must be 100%',
      '10%, 100%' => 'canary must be a count',
      '0, 100%' => 'at least 1 host',
      '1, 30%, 20%, 100%' => 'must grow',
      '5, 3, 100%' => 'must grow',
      '1, 150%, 100%' => 'must grow',
      '1, 0%, 100%' => '0% adds no host',
      '1, -5%, 100%' => 'neither a count nor a percentage',
      '1, 1.5%, 100%' => 'neither a count nor a percentage',
      '1, abc, 100%' => 'neither a count nor a percentage',
      ((['1'] * 20) + ['100%']).join(',') => 'at most 20',
    }.each do |text, message|
      error = assert_raises(Invalid, text) { Spec.parse(text) }
      assert_includes error.message, message, text
    end
  end

  def test_a_spec_is_frozen
    spec = Spec.parse('1, 100%')
    assert_predicate spec, :frozen?
    assert_raises(FrozenError) { spec.steps << nil }
  end
end
