# frozen_string_literal: true

module ForemanPvc
  # What the pages and the API share: which permission each action needs,
  # finding the rollout under it, and running a command on the runner.
  module RolloutCommands
    extend ActiveSupport::Concern

    COMMANDS = %w[start pause resume promote abort refresh].freeze

    # Foreman checks "<action_permission>_<controller_permission>".
    def action_permission
      COMMANDS.include?(params[:action]) ? 'manage' : super
    end

    def controller_permission
      'rollouts'
    end

    # Foreman guesses the model from the controller's name (PvcRollout,
    # Rollout), and its API answers a missing record by comparing with this
    # class: without it every 404 became a 500.
    def resource_class
      StagedRollout
    end

    private

    def find_rollout
      @rollout = StagedRollout.authorized("#{action_permission}_rollouts", StagedRollout).find(params[:id])
    end

    # Runs the action's command; nil when it worked, else the reason.
    def run_command
      runner = ForemanWiring.runner(@rollout, User.current)
      case params[:action]
      when 'pause' then runner.pause!(params[:reason])
      when 'abort' then runner.abort!(remove_flag: Foreman::Cast.to_bool(params[:remove_flag]), reason: params[:reason])
      when 'refresh' then runner.tick!
      else runner.public_send(:"#{params[:action]}!") # start, resume, promote
      end
      nil
    rescue Rollout::Error, RolloutRunner::Error, Adapters::BridgeClient::Error => e
      e.message
    end
  end
end
