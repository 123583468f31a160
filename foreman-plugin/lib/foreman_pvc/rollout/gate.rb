# frozen_string_literal: true

module ForemanPvc
  module Rollout
    # Whether a wave may be followed by the next one. Unreachable hosts do
    # not fail a wave (they never ran the change) but do not pass it either:
    # a wave in which no host ran is no evidence and pauses the rollout.
    class Gate
      Decision = Struct.new(:verdict, :reason)

      class Decision
        %i[wait pass pause].each { |v| define_method(:"#{v}?") { verdict == v } }
      end

      # threshold_percent: failures allowed per wave, as a percentage of
      # the wave's hosts, rounded down (0 = any failure pauses).
      def initialize(threshold_percent)
        @threshold = Integer(threshold_percent)
        raise InvalidError, 'failure threshold: 0..100 percent' unless (0..100).cover?(@threshold)
      rescue ArgumentError, TypeError
        raise InvalidError, "failure threshold: #{threshold_percent.inspect} is not a percentage"
      end

      def allowed_failures(size)
        (size * @threshold / 100.0).floor
      end

      # outcomes: the wave's HostOutcomes; timed_out: the wave timeout passed.
      # Failures only grow, so the threshold is checked before the wave ends.
      def evaluate(outcomes, timed_out:)
        counts = Hash.new(0).merge(outcomes.map(&:status).tally)
        pending = counts[:pending]
        # At the timeout a silent host is a failure: nothing shows it works.
        failed = counts[:failed] + (timed_out ? pending : 0)
        allowed = allowed_failures(outcomes.size)

        if failed > allowed
          Decision.new(:pause, failure_reason(failed, outcomes.size, allowed, timed_out && pending.positive?))
        elsif pending.positive? && !timed_out
          Decision.new(:wait, "#{pending} of #{outcomes.size} hosts have not reported yet")
        else
          verdict_without_pending(counts)
        end
      end

      private

      def verdict_without_pending(counts)
        return Decision.new(:pass, nil) if counts[:ok].positive?

        Decision.new(:pause, 'no host of this wave ran with the flag (all unreachable)')
      end

      def failure_reason(failed, size, allowed, with_timeouts)
        reason = "#{failed} of #{size} hosts failed, above the threshold of #{@threshold}% (at most #{allowed})"
        with_timeouts ? "#{reason}; hosts without a report by the wave timeout count as failed" : reason
      end
    end
  end
end
