# frozen_string_literal: true

module ForemanPvc
  # Connects the runner to Foreman: its settings, its host search and
  # parameters, the bridge's report tables in Foreman's database, and the
  # bridge's API. The only place that reads the plugin's settings.
  module ForemanWiring
    module_function

    # The API's and the form's checks, with this installation's defaults.
    def params
      Rollout::Params.new(flag_name: Setting[:pvc_flag_parameter],
                          failure_threshold: Setting[:pvc_failure_threshold],
                          wave_timeout: Setting[:pvc_wave_timeout])
    end

    def runner(rollout, user)
      ports = RolloutRunner::Ports.new(directory: Adapters::HostDirectory.new(user),
                                       flags: Adapters::HostFlags.new(user),
                                       bridge: bridge,
                                       reports: Adapters::BridgeReports.new(ActiveRecord::Base.connection))
      RolloutRunner.new(rollout, actor: user.login, ports: ports,
                                 evidence: { offline_after_secs: Setting[:pvc_offline_after] })
    end

    # Who the periodic job acts as for a rollout: the person who last
    # started or resumed it, so the waves it starts by itself are written,
    # checked (edit_hosts) and audited as that person's. Foreman's
    # anonymous admin only when that user no longer exists.
    def acting_user(rollout)
      login = rollout.transitions.where(event: %w[start resume])
                     .where.not(user_login: RolloutRunner::SYSTEM).last&.user_login
      # unscoped: outside a request Foreman's default scope hides every user.
      (login && ::User.unscoped.find_by(login: login)) || ::User.anonymous_admin
    end

    # A bridge that is not configured yet must not block pausing or
    # aborting: its error shows on the wave that needed it.
    def bridge
      Adapters::BridgeClient.new(url: Setting[:pvc_bridge_url], token: Setting[:pvc_bridge_token],
                                 ca_file: Setting[:pvc_bridge_ca_file])
    rescue Adapters::BridgeClient::Error => e
      UnconfiguredBridge.new(e.message)
    end

    # Answers every request with the configuration error.
    UnconfiguredBridge = Struct.new(:message) do
      def converge(*)
        raise Adapters::BridgeClient::Error, "#{message} (Administer > Settings > Rollouts)"
      end
      alias_method :converge_progress, :converge
    end
  end
end
