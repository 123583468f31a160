# frozen_string_literal: true

module ForemanPvc
  # Turns the reports of a wave's hosts into their outcomes (the evidence
  # rules of ForemanPvc::Rollout::Evidence) and stores what changed.
  #
  #   reports.since(certnames, time) -> { certname => [Rollout::Report] }
  #   reports.last_seen(certnames)   -> { certname => Time }
  class WaveObserver
    UNKNOWN_TO_BRIDGE = 'unknown to the bridge'

    def initialize(reports, evidence_options = {})
      @reports = reports
      @options = evidence_options
    end

    # The wave's Rollout::HostOutcomes, as of `now`.
    def observe!(wave, now)
      hosts = wave.wave_hosts.to_a
      names = hosts.map(&:hostname)
      reports = @reports.since(names, wave.flag_set_at)
      seen = @reports.last_seen(names)
      evidence = Rollout::Evidence.new(flag_set_at: wave.flag_set_at, **@options)
      hosts.map do |host|
        # The bridge never heard of it: no report will come.
        next host.outcome_value if host.reason == UNKNOWN_TO_BRIDGE

        record(host, evidence.classify(reports: reports.fetch(host.hostname, []),
                                       last_seen_at: seen[host.hostname], now: now), now)
      end
    end

    private

    def record(host, outcome, now)
      values = { outcome: outcome.status.to_s, reason: outcome.reason, report_id: outcome.report_id }
      host.update!(values.merge(observed_at: now)) if values.any? { |k, v| host.public_send(k) != v }
      outcome
    end
  end
end
