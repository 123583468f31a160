# frozen_string_literal: true

module ForemanPvc
  # The Rollouts pages (Hosts → Rollouts). Thin: checks go through
  # ForemanPvc::Rollout::Params, actions through ForemanPvc::RolloutRunner.
  class RolloutsController < ::ApplicationController
    include ::Foreman::Controller::AutoCompleteSearch
    include ForemanPvc::RolloutCommands

    before_action :find_rollout, only: %i[show] + RolloutCommands::COMMANDS.map(&:to_sym)

    def index
      @rollouts = resource_base_search_and_page
    end

    def new
      @form = ForemanWiring.params.form_defaults
      @errors = {}
      @form[:search] = selection_search
    rescue Rollout::InvalidError => e
      @form ||= {}
      @errors = { 'base' => [e.message] }
    end

    def create
      form = params.require(:rollout).permit(*Rollout::Params::FIELDS).to_h
      result = ForemanWiring.params.call(form)
      rollout = result.ok? && StagedRollout.new(result.attributes.merge(created_by: User.current.login))
      if rollout&.save
        flash[:success] = _('Rollout %s created; start it when ready.') % rollout.name
        redirect_to rollout_path(rollout)
      else
        @form = form.symbolize_keys
        @errors = result.ok? ? { 'base' => rollout.errors.full_messages } : result.errors
        render :new, status: :unprocessable_entity
      end
    end

    def show
      @waves = @rollout.wave_records.includes(:wave_hosts)
      @transitions = @rollout.transitions
    end

    RolloutCommands::COMMANDS.each do |command|
      define_method(command) do
        error = run_command
        if error
          flash[:error] = error
        else
          flash[:success] = _('Done: %s.') % _(command)
        end
        redirect_to rollout_path(@rollout)
      end
    end

    # Foreman derives the model from the controller's path, which here
    # would be the domain's namespace, not the table.
    def model_of_controller
      StagedRollout
    end

    private

    # "Start rollout for selected hosts" on the hosts list sends their ids,
    # or its search when every host of it was selected.
    def selection_search
      Rollout::Selection.search(host_ids: params[:host_ids], search: params[:search])
    end
  end
end
