# frozen_string_literal: true

require_relative '../../domain_helper'

class WavePlannerTest < Minitest::Test
  include DomainHelper
  Rollout = ForemanPvc::Rollout

  def plan(spec, list)
    Rollout::WavePlanner.new(spec).plan(list)
  end

  def test_canary_then_cumulative_percentages
    waves = plan('1, 5%, 25%, 100%', hosts(100))
    assert_equal [1, 4, 20, 75], waves.map(&:size)
    assert_equal hosts(100).sort, waves.flatten.sort
  end

  def test_counts_are_cumulative_targets_too
    assert_equal [2, 8, 30], plan('2, 10, 100%', hosts(40)).map(&:size)
  end

  def test_steps_that_add_no_host_are_dropped
    # 5% of 10 hosts rounds up to the canary: no empty wave.
    assert_equal [1, 2, 7], plan('1, 5%, 25%, 100%', hosts(10)).map(&:size)
    assert_equal [[hosts(1).first]], plan('1, 50%, 100%', hosts(1))
  end

  def test_a_canary_larger_than_the_fleet_takes_every_host_once
    assert_equal [3], plan('5, 100%', hosts(3)).map(&:size)
  end

  def test_the_order_is_the_same_whatever_order_the_search_returned
    list = hosts(50)
    assert_equal plan('1, 10%, 100%', list), plan('1, 10%, 100%', list.reverse)
    assert_equal plan('1, 10%, 100%', list), plan('1, 10%, 100%', list.shuffle(random: Random.new(7)))
  end

  def test_the_order_follows_the_hash_of_the_name_not_the_name
    ordered = Rollout::HostOrder.sort(hosts(30))
    refute_equal hosts(30), ordered, 'hash order must not be alphabetical'
    first = hosts(30).min_by { |h| Digest::SHA256.hexdigest(h) }
    assert_equal first, ordered.first
  end

  def test_adding_hosts_keeps_the_relative_order_of_the_others
    small = Rollout::HostOrder.sort(hosts(20))
    large = Rollout::HostOrder.sort(hosts(40))
    assert_equal small, large & small
  end

  def test_duplicates_are_planned_once_ignoring_case
    waves = plan('1, 100%', ['a.example.com', 'A.example.com', 'b.example.com'])
    assert_equal 2, waves.flatten.size
  end

  def test_objects_with_names_are_ordered_by_name
    host = Struct.new(:id, :name)
    objects = hosts(5).each_with_index.map { |n, i| host.new(i, n) }
    assert_equal Rollout::HostOrder.sort(hosts(5)), Rollout::HostOrder.sort(objects).map(&:name)
  end

  def test_no_hosts_no_waves
    assert_equal [], plan('1, 100%', [])
  end
end
