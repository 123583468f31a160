# frozen_string_literal: true

module ForemanPvc
  # A rollout as the API shows it: the same fields the pages show, so a
  # script sees what a person sees.
  class RolloutPresenter
    FIELDS = %i[id name search flag_name flag_value waves failure_threshold wave_timeout promotion state
                current_wave awaiting_approval status_reason created_by resolved_at host_count created_at
                updated_at].freeze

    def initialize(rollout)
      @rollout = rollout
    end

    def summary
      FIELDS.to_h { |f| [f, @rollout.public_send(f)] }.merge(commands: @rollout.available_commands)
    end

    def detail
      summary.merge(wave_progress: @rollout.wave_records.map { |w| wave(w) },
                    transitions: @rollout.transitions.map { |t| transition(t) })
    end

    private

    def wave(wave)
      {
        number: wave.number, state: wave.state, started_at: wave.started_at, flag_set_at: wave.flag_set_at,
        deadline_at: wave.deadline_at, finished_at: wave.finished_at, converge_id: wave.converge_id,
        converge_error: wave.converge_error, gate_reason: wave.gate_reason, approved_by: wave.approved_by,
        approved_at: wave.approved_at, counts: wave.counts,
        hosts: wave.wave_hosts.map do |h|
          { host_id: h.host_id, name: h.hostname, outcome: h.outcome, reason: h.reason, report_id: h.report_id }
        end
      }
    end

    def transition(transition)
      { event: transition.event, from: transition.from_state, to: transition.to_state, by: transition.user_login,
        at: transition.created_at, reason: transition.reason }
    end
  end
end
