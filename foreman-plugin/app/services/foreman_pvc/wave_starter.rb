# frozen_string_literal: true

module ForemanPvc
  # Starts one wave: sets the flag on its hosts, notes when (evidence must
  # come from runs after that), and asks the bridge to run them soon.
  class WaveStarter
    def initialize(rollout, flags:, bridge:, clock:)
      @rollout = rollout
      @flags = flags
      @bridge = bridge
      @clock = clock
    end

    def start!(wave)
      hosts = wave.wave_hosts.to_a
      @flags.set(hosts.map(&:host_id), @rollout.flag_name, @rollout.flag_value)
      # Taken after the last write: evidence must postdate every host's flag.
      flagged = @clock.call
      wave.update!(state: 'active', started_at: flagged, flag_set_at: flagged,
                   deadline_at: @rollout.timeout.deadline(flagged))
      @rollout.update!(current_wave: wave.position, awaiting_approval: false)
      ask_bridge!(wave, hosts)
    end

    private

    # Without the bridge the hosts still run on their own schedule and the
    # wave timeout decides, so a failed request is shown, not fatal.
    def ask_bridge!(wave, hosts)
      converge = @bridge.converge(hosts.map(&:hostname), within_secs: @rollout.timeout.converge_within)
      wave.update!(converge_id: converge.id)
      unknown = Array(converge.unknown_hosts)
      return if unknown.empty?

      wave.wave_hosts.where(hostname: unknown)
          .update_all(outcome: 'unreachable', reason: WaveObserver::UNKNOWN_TO_BRIDGE, observed_at: @clock.call)
    rescue Adapters::BridgeClient::Error => e
      wave.update!(converge_error: e.message.to_s[0, 1000])
    end
  end
end
