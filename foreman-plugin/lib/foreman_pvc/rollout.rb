# frozen_string_literal: true

# The rollout domain: plain Ruby, no Rails and no Foreman, so every rule
# (planning, evidence, gating, states) is tested without either.
module ForemanPvc
  module Rollout
    class Error < StandardError; end

    # A wave specification, a parameter or a transition that cannot be.
    class InvalidError < Error; end

    # An event the current state does not allow (e.g. resuming a draft).
    class TransitionError < Error; end
  end
end

require_relative 'rollout/host_order'
require_relative 'rollout/wave_spec'
require_relative 'rollout/wave_planner'
require_relative 'rollout/report'
require_relative 'rollout/host_outcome'
require_relative 'rollout/evidence'
require_relative 'rollout/wave_timeout'
require_relative 'rollout/gate'
require_relative 'rollout/state_machine'
require_relative 'rollout/promotion'
require_relative 'rollout/params'
require_relative 'rollout/selection'
