# frozen_string_literal: true

module ForemanPvc
  module Rollout
    # What happens after a wave passes its gate: the next wave starts by
    # itself ("automatic") or waits for someone to approve it ("approved").
    class Promotion
      MODES = %w[automatic approved].freeze

      attr_reader :mode

      def initialize(mode)
        @mode = mode.to_s
        raise InvalidError, "promotion: #{mode.inspect} is not one of #{MODES.join(', ')}" unless MODES.include?(@mode)
      end

      # :complete after the last wave, :start_next or :await_approval otherwise.
      # An approval (or a resume that overrode a failed gate) stands for itself.
      def after_pass(last_wave:, approved: false)
        return :complete if last_wave
        return :start_next if mode == 'automatic' || approved

        :await_approval
      end
    end
  end
end
