# frozen_string_literal: true

module ForemanPvc
  module Rollout
    # How a rollout grows: "1, 5%, 25%, 100%". The first step is the canary
    # count; each later step is a cumulative target, either a percentage of
    # the frozen host list or a number of hosts. The last step must be 100%
    # so that a rollout which completes has flagged every host it froze.
    class WaveSpec
      Step = Struct.new(:kind, :value) do
        def to_s
          kind == :percent ? "#{value}%" : value.to_s
        end

        # Hosts covered once this step's wave has started.
        def target(total)
          raw = kind == :percent ? (total * value / 100.0).ceil : value
          raw.clamp(0, total)
        end
      end

      MAX_STEPS = 20

      attr_reader :steps

      def self.parse(text)
        items = text.to_s.split(',').map(&:strip)
        raise InvalidError, 'waves: give at least a canary count and 100%' if items.size < 2
        raise InvalidError, "waves: at most #{MAX_STEPS} steps" if items.size > MAX_STEPS

        new(items.map.with_index { |item, i| parse_step(item, i) })
      end

      def self.parse_step(item, index)
        match = /\A(\d{1,7})(%?)\z/.match(item)
        raise InvalidError, "waves: #{item.inspect} is neither a count nor a percentage" unless match

        step = Step.new(match[2].empty? ? :count : :percent, Integer(match[1], 10))
        raise InvalidError, 'waves: the canary must be a count of hosts, e.g. 1' if index.zero? && step.kind != :count

        step
      end
      private_class_method :parse_step

      def initialize(steps)
        @steps = steps.freeze
        validate!
        freeze
      end

      def canary
        steps.first.value
      end

      # Cumulative host counts after each wave, for `total` hosts. Steps that
      # add nobody (5% of 10 hosts is the canary already) are dropped, so
      # every planned wave has at least one host.
      def targets(total)
        reached = 0
        steps.each_with_object([]) do |step, out|
          target = [step.target(total), reached].max
          next if target == reached

          out << target
          reached = target
        end
      end

      def to_s
        steps.map(&:to_s).join(', ')
      end

      private

      def validate!
        raise InvalidError, 'waves: the canary must be at least 1 host' unless canary.positive?
        raise InvalidError, 'waves: the last step must be 100%' unless steps.last.to_s == '100%'

        %i[count percent].each { |kind| validate_growth!(kind) }
        validate_percentages!
      end

      def validate_percentages!
        percents = values(:percent)
        raise InvalidError, 'waves: a percentage above 100%' if percents.any? { |v| v > 100 }
        raise InvalidError, 'waves: 0% adds no host' if percents.any?(&:zero?)
      end

      # Cumulative targets of one kind must grow, or a wave would be empty.
      def validate_growth!(kind)
        list = values(kind)
        return if list.each_cons(2).all? { |a, b| a < b }

        raise InvalidError, "waves: #{kind} steps must grow (#{list.join(', ')})"
      end

      def values(kind)
        steps.select { |s| s.kind == kind }.map(&:value)
      end
    end
  end
end
