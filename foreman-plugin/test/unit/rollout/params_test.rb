# frozen_string_literal: true

require_relative '../../domain_helper'

class ParamsTest < Minitest::Test
  DEFAULTS = { flag_name: 'update_flag', failure_threshold: 0, wave_timeout: 3600, waves: '1, 5%, 25%, 100%' }.freeze

  def check(raw)
    ForemanPvc::Rollout::Params.new(DEFAULTS).call(raw)
  end

  def test_settings_fill_what_was_left_out
    result = check(name: ' web canary ', search: 'hostgroup = web')
    assert_predicate result, :ok?
    assert_equal({ name: 'web canary', search: 'hostgroup = web', flag_name: 'update_flag', flag_value: true,
                   waves: '1, 5%, 25%, 100%', failure_threshold: 0, wave_timeout: 3600, promotion: 'automatic' },
                 result.attributes)
  end

  def test_submitted_values_win_and_are_normalised
    result = check('name' => 'n', 'search' => 's', 'flag_name' => 'pvc_facter_new_ntp', 'flag_value' => 'no',
                   'waves' => %w[2 50% 100%], 'failure_threshold' => '10', 'wave_timeout' => '900',
                   'promotion' => 'approved')
    assert_predicate result, :ok?
    attrs = result.attributes
    assert_equal [false, '2, 50%, 100%', 10, 900, 'approved'],
                 attrs.values_at(:flag_value, :waves, :failure_threshold, :wave_timeout, :promotion)
  end

  def test_a_new_form_starts_from_the_checked_defaults
    assert_equal({ name: '', search: '', flag_value: true, promotion: 'automatic', waves: '1, 5%, 25%, 100%',
                   flag_name: 'update_flag', failure_threshold: 0, wave_timeout: 3600 },
                 ForemanPvc::Rollout::Params.new(DEFAULTS).form_defaults)
    bad = ForemanPvc::Rollout::Params.new(DEFAULTS.merge(wave_timeout: 5))
    assert_raises(ForemanPvc::Rollout::InvalidError) { bad.form_defaults }
  end

  def test_every_bad_field_is_reported_at_once
    result = check(name: '', search: '  ', flag_name: 'update-flag; rm', flag_value: 'maybe', waves: '1, 50%',
                   failure_threshold: 101, wave_timeout: 5, promotion: 'later', colour: 'red')
    refute_predicate result, :ok?
    assert_nil result.attributes
    assert_equal %w[base failure_threshold flag_name flag_value name promotion search wave_timeout waves],
                 result.errors.keys.sort
    assert_equal ['unknown fields: colour'], result.errors['base']
    assert_match(/FACTER_/, result.errors['flag_name'].first)
    assert_match(/every host/, result.errors['search'].first)
  end

  def test_booleans_accept_the_usual_words_only
    { 'true' => true, 'yes' => true, '1' => true, true => true, 'off' => false, false => false,
      '0' => false }.each do |raw, want|
      assert_equal want, check(name: 'n', search: 's', flag_value: raw).attributes[:flag_value], raw.inspect
    end
    refute_predicate check(name: 'n', search: 's', flag_value: 'tru'), :ok?
  end

  def test_overlong_values_are_refused
    refute_predicate check(name: 'x' * 256, search: 's'), :ok?
    refute_predicate check(name: 'n', search: 's' * 4097), :ok?
    refute_predicate check(name: 'n', search: 's', flag_name: 'f' * 65), :ok?
  end
end
