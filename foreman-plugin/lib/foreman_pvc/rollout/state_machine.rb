# frozen_string_literal: true

module ForemanPvc
  module Rollout
    # The rollout's life: draft → running → paused → completed / aborted.
    # Every move is a Transition naming who made it and when, so the page
    # can answer "who paused this, and why?" without the audit log.
    class StateMachine
      STATES = %w[draft running paused completed aborted].freeze
      FINAL = %w[completed aborted].freeze
      EVENTS = {
        start: { from: %w[draft], to: 'running' },
        pause: { from: %w[running], to: 'paused' },
        resume: { from: %w[paused], to: 'running' },
        complete: { from: %w[running], to: 'completed' },
        abort: { from: %w[draft running paused], to: 'aborted' },
      }.freeze

      Transition = Struct.new(:event, :from, :to, :by, :at, :reason, keyword_init: true)

      attr_reader :state, :history

      def initialize(state = 'draft', history = [])
        raise InvalidError, "unknown rollout state #{state.inspect}" unless STATES.include?(state.to_s)

        @state = state.to_s
        @history = history.dup
      end

      def can?(event)
        rule = EVENTS[event.to_sym]
        !rule.nil? && rule[:from].include?(state)
      end

      def allowed_events
        EVENTS.keys.select { |e| can?(e) }
      end

      def final?
        FINAL.include?(state)
      end

      # Moves to the event's state and returns the Transition. `by` is a
      # login, or "system" for the rollout's own pauses and completion.
      def fire(event, by:, at:, reason: nil)
        rule = EVENTS[event.to_sym]
        raise TransitionError, "unknown event #{event.inspect}" unless rule
        raise TransitionError, "cannot #{event} a #{state} rollout" unless rule[:from].include?(state)
        raise InvalidError, 'a transition needs who made it' if by.to_s.strip.empty?

        transition = Transition.new(event: event.to_sym, from: state, to: rule[:to], by: by.to_s,
                                    at: at, reason: reason)
        @state = rule[:to]
        @history << transition
        transition
      end
    end
  end
end
