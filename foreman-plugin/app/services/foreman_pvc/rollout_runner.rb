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
  #   bridge.converge_progress(id) -> {"done" => bool, …} or nil
  #   reports: see WaveObserver
  class RolloutRunner
    class Error < StandardError; end

    Ports = Struct.new(:directory, :flags, :bridge, :reports, keyword_init: true)

    SYSTEM = 'system'

    # evidence: options of Rollout::Evidence (settle_secs, offline_after_secs).
    def initialize(rollout, actor:, ports:, clock: -> { Time.now.utc }, evidence: {})
      @rollout = rollout
      @actor = actor
      @directory = ports.directory
      @flags = ports.flags
      @bridge = ports.bridge
      @observer = WaveObserver.new(ports.reports, evidence)
      settle = evidence.fetch(:settle_secs, Rollout::Evidence::DEFAULT_SETTLE_SECS)
      @reconverger = WaveReconverger.new(rollout, bridge: ports.bridge, settle_secs: settle)
      @clock = clock
    end

    # draft -> running: resolves the search once, plans the waves, starts
    # the canary wave.
    def start!
      locked do
        raise Error, "cannot start a #{@rollout.state} rollout" unless @rollout.machine.can?(:start)

        FrozenHostList.new(@rollout).store!(@directory.resolve(@rollout.search), now)
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

        outcomes = @observer.observe!(wave, now)
        decision = @rollout.gate.evaluate(outcomes, timed_out: @rollout.timeout.expired?(wave.started_at, now))
        if decision.pause?
          wave.update!(state: 'failed', gate_reason: decision.reason, finished_at: now)
          @rollout.fire!(:pause, by: SYSTEM, at: now, reason: "wave #{wave.number}: #{decision.reason}")
        elsif decision.pass?
          wave.update!(state: 'passed', finished_at: now)
          advance!(wave, approved: false)
        else
          @reconverger.call(wave, now)
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
        raise Error, 'the rollout is not waiting for an approval' unless @rollout.waiting_for_approval?

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

    def start_wave!(position)
      wave = @rollout.wave_records.reload.detect { |w| w.position == position }
      WaveStarter.new(@rollout, flags: @flags, bridge: @bridge, clock: @clock).start!(wave)
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
