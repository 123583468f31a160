# frozen_string_literal: true

require 'test_helper'
require_relative '../support/registration_recorder'

# lib/foreman_pvc/register.rb run against a recorder standing in for
# Foreman::Plugin: what the plugin declares, and that its permissions cover
# every route it draws (Foreman refuses unmapped actions to non-admins).
class RegistrationTest < ActiveSupport::TestCase
  setup { @r = RegistrationRecorder.record }

  test 'registers as foreman_pvc for Foreman 3.13 and later' do
    assert_equal [[:foreman_pvc]], @r.find(:register).map { |c| c[1] }
    assert_equal [['>= 3.13']], @r.find(:requires_foreman).map { |c| c[1] }
  end

  test 'three permissions on rollouts, each with its resource type' do
    permissions = @r.find(:permission)
    assert_equal %i[view_rollouts create_rollouts manage_rollouts], permissions.map { |c| c[1].first }
    permissions.each { |c| assert_equal 'ForemanPvc::StagedRollout', c[2][:resource_type] }
  end

  test 'every routed action is covered by exactly one permission' do
    mapped = Hash.new { |h, k| h[k] = [] }
    @r.find(:permission).each do |_, (name, map), _|
      map.each { |controller, actions| actions.each { |a| mapped["#{controller}##{a}"] << name } }
    end
    routes = ForemanPvc::Engine.routes.routes.to_a + Rails.application.routes.routes.to_a
    routed = routes.filter_map do |route|
      controller = route.defaults[:controller]
      "#{controller}##{route.defaults[:action]}" if controller.to_s.match?(%r{\A(foreman_pvc/|api/v2/pvc_)})
    end
    assert_operator routed.uniq.size, :>=, 20
    routed.uniq.each { |action| assert_equal 1, mapped[action].size, "#{action}: #{mapped[action].inspect}" }
    assert_equal [], mapped.keys - routed, 'permissions name actions no route reaches'
  end

  test 'the manager role can do what a rollout does to hosts' do
    roles = @r.find(:role).to_h { |c| [c[1][0], c[1][1]] }
    manager = roles.fetch('PVC rollout manager')
    assert_empty %i[view_rollouts create_rollouts manage_rollouts edit_hosts create_params edit_params
                    destroy_params] - manager
    assert_equal %i[view_rollouts], roles.fetch('PVC rollout viewer')
  end

  test 'a menu entry under Hosts and the bulk action on the hosts list' do
    menus = @r.find(:menu)
    assert_equal 1, menus.size
    menu = menus.first
    assert_equal %i[top_menu pvc_rollouts], menu[1]
    assert_equal :hosts_menu, menu[2][:parent]
    assert_equal ForemanPvc::Engine, menu[2][:engine]
    assert_equal({ controller: :'foreman_pvc/rollouts', action: :index }, menu[2][:url_hash])
    assert_equal [[:pvc_rollout_multiple_actions]], @r.find(:multiple_actions_provider).map { |c| c[1] }
  end

  test 'settings with their defaults; the token is stored encrypted' do
    settings = @r.find(:setting).to_h { |c| [c[1].first, c[2]] }
    assert_equal %w[pvc_flag_parameter pvc_failure_threshold pvc_wave_timeout pvc_offline_after pvc_bridge_url
                    pvc_bridge_token pvc_bridge_ca_file], settings.keys
    assert_equal 'update_flag', settings['pvc_flag_parameter'][:default]
    assert_equal [0, 3600], settings.values_at('pvc_failure_threshold', 'pvc_wave_timeout').map { |s| s[:default] }
    assert settings['pvc_bridge_token'][:encrypted]
    settings.each_value { |s| assert s[:description].present? && s[:full_name].present? }
    # the defaults pass the API's own checks
    defaults = ForemanPvc::Rollout::Params.new(flag_name: settings['pvc_flag_parameter'][:default],
                                               failure_threshold: settings['pvc_failure_threshold'][:default],
                                               wave_timeout: settings['pvc_wave_timeout'][:default],
                                               waves: ForemanPvc::Rollout::Params::DEFAULT_WAVES)
    assert_predicate defaults.call(name: 'n', search: 's'), :ok?
  end

  test 'API docs come from the API controllers' do
    globs = @r.find(:apipie_documented_controllers).map { |c| c[1].first }.flatten
    assert_equal 1, globs.size
    assert_includes Dir[globs.first].map { |f| File.basename(f) }, 'pvc_rollouts_controller.rb'
  end
end
