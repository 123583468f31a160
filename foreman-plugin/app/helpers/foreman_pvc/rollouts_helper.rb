# frozen_string_literal: true

module ForemanPvc
  # Labels and colours for the pages, in one place.
  module RolloutsHelper
    STATE_CLASSES = { 'draft' => 'default', 'running' => 'primary', 'paused' => 'warning',
                      'completed' => 'success', 'aborted' => 'danger' }.freeze
    OUTCOME_CLASSES = { 'pending' => 'default', 'ok' => 'success', 'failed' => 'danger',
                        'unreachable' => 'warning' }.freeze

    def pvc_state_label(state)
      tag.span(_(state), class: "label label-#{STATE_CLASSES.fetch(state, 'default')}")
    end

    def pvc_outcome_label(outcome)
      tag.span(pvc_outcome_name(outcome), class: "label label-#{OUTCOME_CLASSES.fetch(outcome, 'default')}")
    end

    def pvc_outcome_name(outcome)
      { 'pending' => _('pending'), 'ok' => _('ran ok'), 'failed' => _('failed'),
        'unreachable' => _('unreachable') }.fetch(outcome, outcome)
    end

    # One progress bar per wave: ran ok, failed, unreachable, pending.
    def pvc_wave_bar(counts)
      total = counts.values.sum
      return '' if total.zero?

      bars = %w[ok failed unreachable].map do |outcome|
        width = (100.0 * counts[outcome] / total).round(1)
        tag.div('', class: "progress-bar progress-bar-#{OUTCOME_CLASSES[outcome]}", style: "width: #{width}%",
                    title: "#{pvc_outcome_name(outcome)}: #{counts[outcome]}")
      end
      tag.div(safe_join(bars), class: 'progress')
    end

    def pvc_command_allowed?(rollout, command)
      rollout.available_commands.include?(command) &&
        authorized_for(controller: 'foreman_pvc/rollouts', action: command)
    end
  end
end
