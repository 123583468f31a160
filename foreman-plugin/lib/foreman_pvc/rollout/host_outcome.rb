# frozen_string_literal: true

module ForemanPvc
  module Rollout
    # Where one host of a wave stands, and why.
    HostOutcome = Struct.new(:status, :reason, :report_id)

    class HostOutcome
      STATUSES = %i[pending ok failed unreachable].freeze

      def self.pending(reason = nil)
        new(:pending, reason, nil)
      end

      STATUSES.each do |s|
        define_method(:"#{s}?") { status == s }
      end
    end
  end
end
