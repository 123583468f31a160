# frozen_string_literal: true

module ForemanPvc
  module Rollout
    # Splits a frozen host list into waves: the same hosts and spec give the
    # same waves, so a plan shown before the start is the plan that runs.
    class WavePlanner
      def initialize(spec)
        @spec = spec.is_a?(WaveSpec) ? spec : WaveSpec.parse(spec)
      end

      # Arrays of hosts, canary wave first.
      def plan(hosts)
        ordered = HostOrder.sort(hosts)
        start = 0
        @spec.targets(ordered.size).map do |target|
          wave = ordered[start...target]
          start = target
          wave
        end
      end
    end
  end
end
