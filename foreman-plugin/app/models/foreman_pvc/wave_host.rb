# frozen_string_literal: true

module ForemanPvc
  # A host of the frozen list, in its wave, with what its reports showed.
  class WaveHost < ::ApplicationRecord
    self.table_name = 'foreman_pvc_wave_hosts'

    OUTCOMES = %w[pending ok failed unreachable].freeze

    belongs_to :wave, class_name: 'ForemanPvc::Wave', inverse_of: :wave_hosts
    belongs_to :rollout, class_name: 'ForemanPvc::StagedRollout', inverse_of: :wave_hosts

    validates :outcome, inclusion: { in: OUTCOMES }
    validates :hostname, presence: true

    def outcome_value
      Rollout::HostOutcome.new(outcome.to_sym, reason, report_id)
    end
  end
end
