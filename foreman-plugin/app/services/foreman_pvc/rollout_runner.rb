# frozen_string_literal: true

module ForemanPvc
  # Moves one rollout along: freezes its hosts, starts waves (flag, then a
  # converge request), turns reports into per-host outcomes, and applies the
  # gate, promotion and state rules of ForemanPvc::Rollout. Everything
  # Foreman- or network-bound comes in as a port, so the same code runs
  # with Foreman's adapters in production and with fakes in the tests:
  #
  #   directory.resolve(search)          -> [#id, #name]
  #   flags.set(ids, name, value) / flags.remove(ids, name)
  #   bridge.converge(certnames, within_secs:) -> #id, #unknown_hosts
  #   reports.since(certnames, time)     -> { certname => [Rollout::Report] }
  #   reports.last_seen(certnames)       -> { certname => Time }
  class RolloutRunner
    class Error < StandardError; end

    SYSTEM = 'system'
    UNKNOWN_TO_BRIDGE = 'unknown to the bridge'

    def initialize(rollout, actor:, directory:, flags:, bridge:, reports:, clock: -> { Time.now.utc },
                   settle_secs: Rollout::Evidence::DEFAULT_SETTLE_SECS,
                   offline_after_secs: Rollout::Evidence::DEFAULT_OFFLINE_AFTER_SECS)
      @rollout = rollout
      @actor = actor
      @directory = directory
      @flags = flags
      @bridge = bridge
      @reports = reports
      @clock = clock
      @settle_secs = settle_secs
      @offline_after_secs = offline_after_secs
    end

    # draft -> running: resolves the search once, plans the waves, starts
    # the canary wave.
    def start!
      locked do
        raise Error, "cannot start a #{@rollout.state} rollout" unless @rollout.machine.can?(:start)

        freeze_hosts!
        @rollout.fire!(:start, by: @actor, at: now)
        start_wave!(0)
      end
    end

    # Re-reads the current wave's evidence and acts on the gate. Called by
    # the periodic job and by "refresh"; does nothing unless running.
    def tick!
      locked do
        wave = @rollout.current_wave_record
        next unless @rollout.state == 'running' && wave&.state == 'active'

        outcomes = observe!(wave)
        decision = @rollout.gate.evaluate(outcomes, timed_out: @rollout.timeout.expired?(wave.started_at, now))
        if decision.pause?
          wave.update!(state: 'failed', gate_reason: decision.reason, finished_at: now)
          @rollout.fire!(:pause, by: SYSTEM, at: now, reason: "wave #{wave.number}: #{decision.reason}")
        elsif decision.pass?
          wave.update!(state: 'passed', finished_at: now)
          advance!(wave, approved: false)
        end
        decision
      end
    end

    def pause!(reason = nil)
      locked { @rollout.fire!(:pause, by: @actor, at: now, reason: reason.presence || 'paused by hand') }
    end

    # A rollout the gate paused continues past its failed wave: resuming
    # is the operator's decision to accept it, and is recorded as such.
    def resume!
      locked do
        @rollout.fire!(:resume, by: @actor, at: now)
        wave = @rollout.current_wave_record
        if wave&.state == 'failed'
          wave.update!(state: 'overridden', approved_by: @actor, approved_at: now)
          advance!(wave, approved: true)
        end
      end
    end

    # Starts the next wave of a rollout waiting for approval.
    def promote!
      locked do
        raise Error, 'the rollout is not waiting for an approval' unless @rollout.state == 'running' && @rollout.awaiting_approval

        wave = @rollout.current_wave_record
        wave.update!(approved_by: @actor, approved_at: now)
        advance!(wave, approved: true)
      end
    end

    # Stops for good; with remove_flag the parameter is taken off every
    # host that got it, so their inherited value applies again.
    def abort!(remove_flag:, reason: nil)
      locked do
        @rollout.fire!(:abort, by: @actor, at: now, reason: reason.presence || 'aborted by hand')
        @flags.remove(flagged_host_ids, @rollout.flag_name) if remove_flag
        @rollout.update!(awaiting_approval: false)
      end
    end

    private

    def now
      @clock.call
    end

    # One runner at a time per rollout: the job and a user's click may
    # arrive together.
    def locked(&block)
      StagedRollout.transaction do
        @rollout.lock!
        block.call
      end
    end

    def freeze_hosts!
      hosts = @directory.resolve(@rollout.search)
      raise Error, "the search #{@rollout.search.inspect} matches no host you may edit" if hosts.empty?

      waves = Rollout::WavePlanner.new(@rollout.waves).plan(hosts)
      position = 0
      waves.each_with_index do |members, index|
        wave = @rollout.wave_records.create!(position: index, state: 'pending')
        rows = members.map do |host|
          position += 1
          { wave_id: wave.id, rollout_id: @rollout.id, host_id: host.id, hostname: host.name, position: position }
        end
        WaveHost.insert_all!(rows)
      end
      @rollout.update!(resolved_at: now, host_count: position)
    end

    def start_wave!(position)
      wave = @rollout.wave_records.reload.detect { |w| w.position == position }
      hosts = wave.wave_hosts.to_a
      @flags.set(hosts.map(&:host_id), @rollout.flag_name, @rollout.flag_value)
      # Taken after the last write: evidence must postdate every host's flag.
      flagged = now
      wave.update!(state: 'active', started_at: flagged, flag_set_at: flagged,
                   deadline_at: @rollout.timeout.deadline(flagged))
      @rollout.update!(current_wave: position, awaiting_approval: false)
      ask_bridge!(wave, hosts)
    end

    # Without the bridge the hosts still run on their own schedule; the
    # wave timeout then decides. So a failed request is shown, not fatal.
    def ask_bridge!(wave, hosts)
      converge = @bridge.converge(hosts.map(&:hostname), within_secs: @rollout.timeout.converge_within)
      wave.update!(converge_id: converge.id)
      unknown = Array(converge.unknown_hosts)
      return if unknown.empty?

      wave.wave_hosts.where(hostname: unknown)
          .update_all(outcome: 'unreachable', reason: UNKNOWN_TO_BRIDGE, observed_at: now)
    rescue StandardError => e
      wave.update!(converge_error: e.message.to_s[0, 1000])
    end

    def observe!(wave)
      hosts = wave.wave_hosts.to_a
      names = hosts.map(&:hostname)
      reports = @reports.since(names, wave.flag_set_at)
      seen = @reports.last_seen(names)
      evidence = Rollout::Evidence.new(flag_set_at: wave.flag_set_at, settle_secs: @settle_secs,
                                       offline_after_secs: @offline_after_secs)
      hosts.map { |host| observe_host!(host, evidence, reports, seen) }
    end

    def observe_host!(host, evidence, reports, seen)
      # The bridge never heard of it: no report will come.
      return host.outcome_value if host.reason == UNKNOWN_TO_BRIDGE

      outcome = evidence.classify(reports: reports.fetch(host.hostname, []), last_seen_at: seen[host.hostname], now: now)
      changed = host.outcome != outcome.status.to_s || host.reason != outcome.reason || host.report_id != outcome.report_id
      host.update!(outcome: outcome.status.to_s, reason: outcome.reason, report_id: outcome.report_id, observed_at: now) if changed
      outcome
    end

    def advance!(wave, approved:)
      last = wave.position == @rollout.wave_records.maximum(:position)
      case @rollout.promotion_rule.after_pass(last_wave: last, approved: approved)
      when :complete then @rollout.fire!(:complete, by: approved ? @actor : SYSTEM, at: now)
      when :start_next then start_wave!(wave.position + 1)
      when :await_approval then @rollout.update!(awaiting_approval: true)
      end
    end

    def flagged_host_ids
      @rollout.wave_hosts.joins(:wave).where.not(foreman_pvc_waves: { started_at: nil }).pluck(:host_id)
    end
  end
end
