# frozen_string_literal: true

module ForemanPvc
  # Asks the bridge again for the hosts of an active wave that are still
  # pending once its converge request is done. The bridge may run a host
  # within seconds of the request, inside the settle window of the
  # evidence rules, and then counts the request done: such a run proves
  # nothing, and no other run would come before the host's own schedule.
  class WaveReconverger
    # The shortest deadline asked of the bridge.
    MIN_WITHIN_SECS = 30

    def initialize(rollout, bridge:, settle_secs:)
      @rollout = rollout
      @bridge = bridge
      @settle_secs = settle_secs
    end

    def call(wave, now)
      pending = due?(wave, now) && wave.wave_hosts.where(outcome: 'pending').pluck(:hostname)
      return if pending.blank? || !request_done?(wave)

      within = [@rollout.timeout.converge_within, ((wave.deadline_at - now) / 2).floor].min
      wave.update!(converge_id: @bridge.converge(pending, within_secs: [within, MIN_WITHIN_SECS].max).id)
    rescue Adapters::BridgeClient::Error => e
      wave.update!(converge_error: e.message.to_s[0, 1000])
    end

    private

    def due?(wave, now)
      !wave.converge_id.nil? && now >= wave.flag_set_at + @settle_secs
    end

    # nil: the bridge forgot the request (restarted on a new database).
    def request_done?(wave)
      progress = @bridge.converge_progress(wave.converge_id)
      progress.nil? || progress['done'] == true
    end
  end
end
