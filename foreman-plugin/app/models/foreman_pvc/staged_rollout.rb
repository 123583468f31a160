# frozen_string_literal: true

module ForemanPvc
  # A rollout as stored. The rules live in ForemanPvc::Rollout (plain Ruby);
  # this model persists their results. Named StagedRollout because
  # ForemanPvc::Rollout is the domain's namespace.
  class StagedRollout < ::ApplicationRecord
    self.table_name = 'foreman_pvc_rollouts'

    # Inside Foreman: permission filters and the search bar.
    include ::Authorizable if defined?(::Authorizable)
    if respond_to?(:scoped_search)
      # The API lists newest first (order "id DESC"); scoped_search refuses
      # to order by a field it does not know.
      scoped_search on: :id, complete_enabled: false, only_explicit: true,
                    validator: ::ScopedSearch::Validators::INTEGER
      scoped_search on: :name, complete_value: true
      scoped_search on: :state, complete_value: { draft: 'draft', running: 'running', paused: 'paused',
                                                  completed: 'completed', aborted: 'aborted' }
      scoped_search on: :flag_name, complete_value: true
    end

    has_many :wave_records, -> { order(:position) },
             class_name: 'ForemanPvc::Wave', foreign_key: :rollout_id, inverse_of: :rollout
    has_many :wave_hosts, class_name: 'ForemanPvc::WaveHost', foreign_key: :rollout_id, inverse_of: :rollout
    has_many :transitions, -> { order(:created_at, :id) },
             class_name: 'ForemanPvc::Transition', foreign_key: :rollout_id, inverse_of: :rollout

    validates :name, presence: true, uniqueness: true
    validates :search, :flag_name, :waves, :created_by, presence: true
    validates :state, inclusion: { in: Rollout::StateMachine::STATES }
    validates :promotion, inclusion: { in: Rollout::Promotion::MODES }
    validate :domain_rules

    def to_s
      name
    end

    def current_wave_record
      current_wave && wave_records.detect { |w| w.position == current_wave }
    end

    def machine
      Rollout::StateMachine.new(state)
    end

    # Applies a state-machine event and records who, when and why.
    def fire!(event, by:, at:, reason: nil)
      transition = machine.fire(event, by: by, at: at, reason: reason)
      update!(state: transition.to, status_reason: reason)
      transitions.create!(event: transition.event.to_s, from_state: transition.from, to_state: transition.to,
                          user_login: transition.by, reason: transition.reason, created_at: transition.at)
      transition
    end

    # What a person may do now (completion is the rollout's own doing).
    def available_commands
      commands = machine.allowed_events.map(&:to_s) - %w[complete]
      commands << 'promote' if waiting_for_approval?
      commands << 'refresh' if state == 'running'
      commands
    end

    def waiting_for_approval?
      state == 'running' && awaiting_approval
    end

    def gate
      Rollout::Gate.new(failure_threshold)
    end

    def timeout
      Rollout::WaveTimeout.new(wave_timeout)
    end

    def promotion_rule
      Rollout::Promotion.new(promotion)
    end

    private

    # The same checks as the API's, so a row saved from the console or a
    # future form cannot hold a spec the runner would refuse.
    def domain_rules
      Rollout::WaveSpec.parse(waves)
      gate
      timeout
    rescue Rollout::InvalidError => e
      errors.add(:base, e.message)
    end
  end
end
