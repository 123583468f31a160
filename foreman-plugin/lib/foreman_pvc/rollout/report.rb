# frozen_string_literal: true

module ForemanPvc
  module Rollout
    # What one Puppet run said about itself, as the agent reported it to the
    # bridge. Adapters build these from stored reports; the rules in
    # Evidence only ever see this shape.
    #
    # started_at        when the run began (the catalog is compiled after it)
    # cached_catalog_status  Puppet's own word: "not_used" (compiled now),
    #                   "on_failure" (fell back to the last catalog),
    #                   "explicitly_requested" (a cached run on purpose)
    # exit_code         as --detailed-exitcodes: 0/2 ok, 1 failed run or
    #                   compile, 4/6 failed resources; nil when killed
    # failed_resources  from the run summary, nil when there was none
    # puppet_disabled   the run never started: `puppet agent --disable`
    Report = Struct.new(:id, :host, :started_at, :cached_catalog_status, :exit_code,
                        :failed_resources, :puppet_disabled, keyword_init: true)

    class Report
      FRESH = 'not_used'
      FALLBACK = 'on_failure'
      REQUESTED = 'explicitly_requested'

      def fresh_catalog?
        cached_catalog_status == FRESH
      end

      def cached_fallback?
        cached_catalog_status == FALLBACK
      end

      def cached_on_purpose?
        cached_catalog_status == REQUESTED
      end

      def resources_failed?
        failed_resources.to_i.positive? || [4, 6].include?(exit_code)
      end

      def run_failed?
        exit_code.nil? || exit_code == 1
      end
    end
  end
end
