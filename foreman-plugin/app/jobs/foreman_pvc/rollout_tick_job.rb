# frozen_string_literal: true

module ForemanPvc
  # Every minute: reads the reports of each running rollout's wave and
  # applies its gate, so rollouts advance and pause without anyone watching
  # the page. Reschedules itself, like Foreman's own periodic jobs; the
  # engine starts it once when Foreman's job world comes up.
  class RolloutTickJob < (defined?(::ApplicationJob) ? ::ApplicationJob : ::ActiveJob::Base)
    INTERVAL = 60

    # Builds a rollout's runner; replaced in the tests.
    class_attribute :runner_factory, default: lambda { |rollout|
      ForemanWiring.runner(rollout, ForemanWiring.acting_user(rollout))
    }

    def perform
      self.class.advance_all
    ensure
      self.class.set(wait: INTERVAL.seconds).perform_later
    end

    # One pass over the running rollouts, without scheduling the next:
    # what `rake foreman_pvc:tick` runs (a rake process has no Dynflow
    # world to schedule on).
    def self.advance_all
      StagedRollout.where(state: 'running').find_each do |rollout|
        runner_factory.call(rollout).tick!
      rescue StandardError => e
        # One rollout's trouble (a bad setting, a lost database row) must
        # not stop the others from advancing.
        Rails.logger.error("foreman_pvc: rollout #{rollout.id} (#{rollout.name}): #{e.class}: #{e.message}")
      end
    end

    def humanized_name
      _('Advance staged rollouts')
    end
  end
end
