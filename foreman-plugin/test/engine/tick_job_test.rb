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
end
