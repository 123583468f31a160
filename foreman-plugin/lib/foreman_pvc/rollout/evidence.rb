# frozen_string_literal: true

module ForemanPvc
  module Rollout
    # Decides from reports whether a host has run with the flag. A host is
    # done only when a run compiled a fresh catalog after the flag was set:
    # a run that started earlier, or applied a cached catalog, proves
    # nothing about the new code path.
    class Evidence
      # The bridge answers the ENC from a replica and a cache that follow
      # Foreman's writes within about a second; a run starting in that
      # window may still get the old parameters. Agent clocks drift too.
      DEFAULT_SETTLE_SECS = 10
      # Agents upload facts every 30 minutes: two missed uploads and the
      # host is shown as offline instead of holding the wave up.
      DEFAULT_OFFLINE_AFTER_SECS = 3600

      def initialize(flag_set_at:, settle_secs: DEFAULT_SETTLE_SECS, offline_after_secs: DEFAULT_OFFLINE_AFTER_SECS)
        raise InvalidError, 'evidence needs the time the flag was set' if flag_set_at.nil?

        @since = flag_set_at + settle_secs
        @offline_after = offline_after_secs
      end

      # reports: this host's reports (any age, any order); last_seen_at:
      # its last contact with the bridge (facts or report), nil if never;
      # known: false when the bridge does not know the certname.
      def classify(reports:, last_seen_at:, now:, known: true)
        latest = relevant(reports).max_by(&:started_at)
        return judge(latest) if latest
        return HostOutcome.new(:unreachable, 'unknown to the bridge', nil) unless known

        offline(last_seen_at, now) || HostOutcome.pending
      end

      private

      # Reports of runs that started after the flag could be seen. Cached
      # runs on purpose (a file change with no server free) neither prove
      # nor disprove anything, and a run that was locked out will be retried.
      def relevant(reports)
        reports.select do |r|
          r.started_at && r.started_at >= @since && !r.cached_on_purpose?
        end
      end

      def judge(report)
        if report.puppet_disabled
          HostOutcome.new(:unreachable, 'Puppet is disabled on the host', report.id)
        elsif report.cached_fallback?
          HostOutcome.new(:failed, 'the catalog failed; Puppet applied its cached catalog', report.id)
        elsif report.run_failed?
          HostOutcome.new(:failed, failed_run_reason(report), report.id)
        elsif report.resources_failed?
          HostOutcome.new(:failed, "#{report.failed_resources || 'some'} resources failed", report.id)
        elsif report.fresh_catalog?
          HostOutcome.new(:ok, nil, report.id)
        else
          # A report without cached_catalog_status (an older agent) cannot
          # prove the catalog was compiled for this run.
          HostOutcome.pending('the last report does not say how its catalog was made')
        end
      end

      def failed_run_reason(report)
        return 'the run was killed before it finished' if report.exit_code.nil?

        'the run failed (catalog compile or agent error)'
      end

      def offline(last_seen_at, now)
        return HostOutcome.new(:unreachable, 'never seen by the bridge', nil) if last_seen_at.nil?
        return nil if now - last_seen_at <= @offline_after

        HostOutcome.new(:unreachable, "offline: last seen #{last_seen_at.utc.strftime('%F %T UTC')}", nil)
      end
    end
  end
end
