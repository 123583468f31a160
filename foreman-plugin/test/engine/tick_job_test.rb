# frozen_string_literal: true

require 'test_helper'

class TickJobTest < ActiveJob::TestCase
  setup do
    @ticked = []
    @factory = ForemanPvc::RolloutTickJob.runner_factory
    ticked = @ticked
    ForemanPvc::RolloutTickJob.runner_factory = lambda do |rollout|
      Object.new.tap do |runner|
        runner.define_singleton_method(:tick!) do
          ticked << rollout.name
          raise 'bridge exploded' if rollout.name == 'broken'
        end
      end
    end
  end

  teardown { ForemanPvc::RolloutTickJob.runner_factory = @factory }

  def rollout(name, state)
    ForemanPvc::StagedRollout.create!(name: name, search: 's', waves: '1, 100%', created_by: 'alice', state: state)
  end

  test 'ticks every running rollout, survives one failing, and comes back in a minute' do
    rollout('broken', 'running')
    rollout('web', 'running')
    rollout('db', 'paused')
    rollout('old', 'completed')
    assert_enqueued_with(job: ForemanPvc::RolloutTickJob) { ForemanPvc::RolloutTickJob.perform_now }
    assert_equal %w[broken web], @ticked.sort
  end

  # `rake foreman_pvc:tick` runs outside Foreman's job executor, where
  # scheduling the next run raises.
  test 'advance_all ticks the running rollouts once and schedules nothing' do
    rollout('web', 'running')
    rollout('db', 'paused')
    assert_no_enqueued_jobs { ForemanPvc::RolloutTickJob.advance_all }
    assert_equal %w[web], @ticked
  end

  test 'the rake task advances without scheduling' do
    task = File.read(ForemanPvc::Engine.root.join('lib/tasks/foreman_pvc_tasks.rake'))
    assert_match(/RolloutTickJob\.advance_all/, task)
    refute_match(/perform_now|perform_later/, task)
  end
end
