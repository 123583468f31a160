# frozen_string_literal: true

module ForemanPvc
  # One wave of a rollout: its hosts, when the flag was set on them and what
  # the gate decided.
  class Wave < ::ApplicationRecord
    self.table_name = 'foreman_pvc_waves'

    STATES = %w[pending active passed failed overridden].freeze

    belongs_to :rollout, class_name: 'ForemanPvc::StagedRollout', inverse_of: :wave_records
    has_many :wave_hosts, -> { order(:position) }, class_name: 'ForemanPvc::WaveHost', inverse_of: :wave

    validates :state, inclusion: { in: STATES }

    def number
      position + 1
    end

    # { "pending" => n, "ok" => n, "failed" => n, "unreachable" => n }
    def counts
      WaveHost::OUTCOMES.index_with(0).merge(wave_hosts.unscope(:order).group(:outcome).count)
    end
  end
end
