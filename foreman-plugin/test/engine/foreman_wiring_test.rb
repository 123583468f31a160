# frozen_string_literal: true

require 'test_helper'
require_relative '../support/registration_recorder'

# The wiring reads Foreman's settings by name: check that it reads exactly
# the ones register.rb declares, with their declared defaults.
class ForemanWiringTest < ActiveSupport::TestCase
  # Foreman's Setting[...] over the declared defaults; an undeclared name
  # is a test failure, as it would be a nil in production.
  class DeclaredSettings
    def self.values
      @values ||= {}
    end

    def self.[](name)
      values.fetch(name.to_s) { raise KeyError, "setting #{name} is not declared in register.rb" }
    end
  end

  # Foreman's User: the logins that exist, and its anonymous admin.
  class Users
    Person = Struct.new(:login)
    ANONYMOUS = Person.new('foreman_api_admin')

    def self.logins
      @logins ||= []
    end

    # As Foreman's default scope outside a request: nobody.
    def self.find_by(**)
      nil
    end

    def self.unscoped
      Unscoped
    end

    module Unscoped
      def self.find_by(login:)
        Person.new(login) if Users.logins.include?(login)
      end
    end

    def self.anonymous_admin
      ANONYMOUS
    end
  end

  setup do
    Users.logins.replace(%w[alice bob])
    Object.const_set(:User, Users)
    recorder = RegistrationRecorder.record
    DeclaredSettings.values.replace(recorder.find(:setting).to_h { |c| [c[1].first, c[2][:default]] })
    Object.const_set(:Setting, DeclaredSettings)
  end

  teardown do
    Object.send(:remove_const, :Setting)
    Object.send(:remove_const, :User)
  end

  def rollout_by(*events)
    r = ForemanPvc::StagedRollout.create!(name: "r#{SecureRandom.hex(3)}", search: 's', waves: '1, 100%',
                                          created_by: 'alice')
    events.each_with_index do |(event, login), i|
      r.transitions.create!(event: event, from_state: 'x', to_state: 'y', user_login: login,
                            created_at: Time.utc(2026, 11, 27, 12, i))
    end
    r
  end

  test 'the periodic job acts as the person who last started or resumed the rollout' do
    assert_equal 'alice', ForemanPvc::ForemanWiring.acting_user(rollout_by(%w[start alice])).login
    r = rollout_by(%w[start alice], %w[pause system], %w[resume bob], %w[pause carol])
    assert_equal 'bob', ForemanPvc::ForemanWiring.acting_user(r).login
  end

  test "Foreman's anonymous admin only when that person is gone, or nobody started it" do
    assert_equal 'foreman_api_admin', ForemanPvc::ForemanWiring.acting_user(rollout_by(%w[start zed])).login
    assert_equal 'foreman_api_admin', ForemanPvc::ForemanWiring.acting_user(rollout_by).login
  end

  test 'form and API defaults come from the settings' do
    DeclaredSettings.values['pvc_failure_threshold'] = 10
    attrs = ForemanPvc::ForemanWiring.params.call(name: 'n', search: 's').attributes
    assert_equal ['update_flag', 10, 3600], attrs.values_at(:flag_name, :failure_threshold, :wave_timeout)
  end

  test 'a runner is built from the settings; without a bridge URL the wave says so' do
    user = Struct.new(:login).new('alice')
    rollout = ForemanPvc::StagedRollout.create!(name: 'w', search: 's', waves: '1, 100%', created_by: 'alice')
    assert_kind_of ForemanPvc::RolloutRunner, ForemanPvc::ForemanWiring.runner(rollout, user)
    error = assert_raises(ForemanPvc::Adapters::BridgeClient::Error) do
      ForemanPvc::ForemanWiring.bridge.converge(['a'], within_secs: 60)
    end
    assert_match(/bridge URL "" is not http/, error.message)
    DeclaredSettings.values.merge!('pvc_bridge_url' => 'https://bridge:8443', 'pvc_bridge_token' => 'x' * 20)
    assert_kind_of ForemanPvc::Adapters::BridgeClient, ForemanPvc::ForemanWiring.bridge
  end
end
