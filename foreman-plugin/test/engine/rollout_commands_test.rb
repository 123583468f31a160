# frozen_string_literal: true

require 'test_helper'

# The part of the controllers Foreman's base classes call back into.
class RolloutCommandsTest < ActiveSupport::TestCase
  class Controller
    include ForemanPvc::RolloutCommands
    attr_accessor :params
  end

  setup { @controller = Controller.new }

  # Foreman's API answers ActiveRecord::RecordNotFound with 404 only when
  # the error's model is its resource_class; for any other class, or none
  # it can guess, the answer is a 500.
  test "a missing rollout is the controllers' resource: Foreman answers 404" do
    error = assert_raises(ActiveRecord::RecordNotFound) { ForemanPvc::StagedRollout.find(-1) }
    assert_equal error.model, @controller.resource_class.model_name.name
  end

  test 'commands need manage_rollouts, other actions their own permission' do
    @controller.params = { action: 'promote' }
    assert_equal 'manage', @controller.action_permission
    assert_equal 'rollouts', @controller.controller_permission
  end
end
