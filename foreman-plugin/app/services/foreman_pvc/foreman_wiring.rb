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
      RolloutRunner.new(rollout,
                        actor: user.login,
                        directory: Adapters::HostDirectory.new(user),
                        flags: Adapters::HostFlags.new(user),
                        bridge: bridge,
                        reports: Adapters::BridgeReports.new(ActiveRecord::Base.connection),
                        offline_after_secs: Setting[:pvc_offline_after])
    end

    def bridge
      Adapters::BridgeClient.new(url: Setting[:pvc_bridge_url], token: Setting[:pvc_bridge_token],
                                 ca_file: Setting[:pvc_bridge_ca_file])
    end
  end
end
