# frozen_string_literal: true

# What the plugin adds to Foreman. Loaded by the engine only inside Foreman;
# the tests load it against a recorder to check its permissions cover
# every route.
Foreman::Plugin.register :foreman_pvc do
  requires_foreman '>= 3.13'
  register_gettext

  ui = :'foreman_pvc/rollouts'
  api = :'api/v2/pvc_rollouts'

  security_block :foreman_pvc do
    permission :view_rollouts,
               { ui => %i[index show auto_complete_search], api => %i[index show] },
               resource_type: 'ForemanPvc::StagedRollout'
    permission :create_rollouts,
               { ui => %i[new create], api => %i[create] },
               resource_type: 'ForemanPvc::StagedRollout'
    # Starting, promoting and aborting write host parameters; the adapters
    # also check the user's edit_hosts on every host they touch.
    permission :manage_rollouts,
               { ui => %i[start pause resume promote abort refresh],
                 api => %i[start pause resume promote abort refresh] },
               resource_type: 'ForemanPvc::StagedRollout'
  end

  role 'PVC rollout manager',
       %i[view_rollouts create_rollouts manage_rollouts view_hosts edit_hosts view_params create_params edit_params
          destroy_params],
       'Plans and runs staged flag rollouts on the hosts it may edit'
  role 'PVC rollout viewer', %i[view_rollouts], 'Sees rollouts and their progress'
  add_all_permissions_to_default_roles

  menu :top_menu, :pvc_rollouts,
       url_hash: { controller: :'foreman_pvc/rollouts', action: :index },
       engine: ForemanPvc::Engine,
       caption: N_('Rollouts'),
       parent: :hosts_menu,
       after: :hosts

  # "Start rollout for selected hosts" in the hosts list's bulk actions.
  describe_host do
    multiple_actions_provider :pvc_rollout_multiple_actions
  end

  settings do
    category :pvc, N_('Rollouts') do
      setting 'pvc_flag_parameter',
              type: :string, default: 'update_flag',
              full_name: N_('Flag parameter'),
              description: N_('Host parameter a rollout sets to true (Puppet sees it as $update_flag)')
      setting 'pvc_failure_threshold',
              type: :integer, default: 0,
              full_name: N_('Failure threshold'),
              description: N_('Failed hosts a wave may have, in percent of its hosts, before the rollout pauses'),
              validate: { numericality: { greater_than_or_equal_to: 0, less_than_or_equal_to: 100 } }
      setting 'pvc_wave_timeout',
              type: :integer, default: 3600,
              full_name: N_('Wave timeout'),
              description: N_('Seconds a wave waits for its hosts; silent hosts then count as failed'),
              validate: { numericality: { greater_than_or_equal_to: 60 } }
      setting 'pvc_offline_after',
              type: :integer, default: 3600,
              full_name: N_('Offline after'),
              description: N_('Seconds without contact after which a host is shown as offline, not waited for')
      setting 'pvc_bridge_url',
              type: :string, default: '',
              full_name: N_('Bridge URL'),
              description: N_('pvc-bridge base URL, e.g. https://bridge.example.com:8443')
      setting 'pvc_bridge_token',
              type: :string, default: '', encrypted: true,
              full_name: N_('Bridge admin token'),
              description: N_("The bridge's admin bearer token (access.admin_token_file)")
      setting 'pvc_bridge_ca_file',
              type: :string, default: '/etc/puppetlabs/puppet/ssl/certs/ca.pem',
              full_name: N_('Bridge CA file'),
              description: N_("CA that signed the bridge's certificate (the Puppet CA)")
    end
  end

  apipie_documented_controllers ["#{ForemanPvc::Engine.root}/app/controllers/api/v2/*.rb"]
end
