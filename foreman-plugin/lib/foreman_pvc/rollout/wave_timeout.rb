# frozen_string_literal: true

module ForemanPvc
  module Rollout
    # How long a wave may wait for its hosts' reports.
    class WaveTimeout
      MIN_SECS = 60
      MAX_SECS = 7 * 24 * 3600

      attr_reader :secs

      def initialize(secs)
        @secs = Integer(secs)
        return if (MIN_SECS..MAX_SECS).cover?(@secs)

        raise InvalidError, "wave timeout: #{@secs} s is outside #{MIN_SECS}..#{MAX_SECS} s"
      rescue ArgumentError, TypeError
        raise InvalidError, "wave timeout: #{secs.inspect} is not a number of seconds"
      end

      def deadline(started_at)
        started_at + secs
      end

      def expired?(started_at, now)
        now >= deadline(started_at)
      end

      # The converge deadline asked of the bridge: half the wave timeout,
      # so each host's run and its report fit in the wave.
      def converge_within
        [secs / 2, MIN_SECS / 2].max
      end
    end
  end
end
