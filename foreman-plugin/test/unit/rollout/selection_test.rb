# frozen_string_literal: true

require_relative '../../domain_helper'

class SelectionTest < Minitest::Test
  Selection = ForemanPvc::Rollout::Selection

  def test_selected_ids_become_an_id_search
    assert_equal 'id ^ (3, 17, 5)', Selection.search(host_ids: %w[3 17 5 17], search: 'ignored')
  end

  def test_all_selected_keeps_the_list_search
    assert_equal 'hostgroup = web', Selection.search(search: ' hostgroup = web ')
    assert_equal '', Selection.search
  end

  def test_ids_are_numbers_or_refused
    assert_raises(ForemanPvc::Rollout::InvalidError) { Selection.search(host_ids: ['1) or (name ~ x']) }
    assert_equal 'x', Selection.search(host_ids: %w[0 -4], search: 'x')
  end
end
