# frozen_string_literal: true

module Api
  module V2
    # Rollouts over the API: everything the pages do. Runs only inside
    # Foreman; the logic is in ForemanPvc::RolloutRunner and
    # ForemanPvc::Rollout::Params, tested without it.
    class PvcRolloutsController < V2::BaseController
      include Api::Version2
      include ForemanPvc::RolloutCommands

      resource_description do
        resource_id 'pvc_rollouts'
        api_version 'v2'
        api_base_url '/api'
        desc N_('Staged rollouts of a Puppet flag parameter (update_flag) through pvc-bridge')
      end

      before_action :find_rollout, only: %i[show] + ForemanPvc::RolloutCommands::COMMANDS.map(&:to_sym)

      api :GET, '/pvc_rollouts/', N_('List rollouts')
      param_group :search_and_pagination, ::Api::V2::BaseController
      def index
        scope = ForemanPvc::StagedRollout.authorized(:view_rollouts, ForemanPvc::StagedRollout)
        page = scope.search_for(params[:search], order: params[:order] || 'id DESC')
                    .paginate(page: params[:page], per_page: params[:per_page])
        render json: { total: scope.count, subtotal: page.total_entries, page: page.current_page,
                       per_page: page.per_page, search: params[:search],
                       results: page.map { |r| ForemanPvc::RolloutPresenter.new(r).summary } }
      end

      api :GET, '/pvc_rollouts/:id/', N_('Show a rollout with its waves, hosts and transitions')
      param :id, :identifier, required: true
      def show
        render json: ForemanPvc::RolloutPresenter.new(@rollout).detail
      end

      def_param_group :pvc_rollout do
        param :pvc_rollout, Hash, required: true, action_aware: true do
          param :name, String, required: true, desc: N_('Unique name')
          param :search, String, required: true, desc: N_('Foreman host search, resolved once when the rollout starts')
          param :flag_name, String, desc: N_('Host parameter to set (default: setting pvc_flag_parameter)')
          param :flag_value, :bool, desc: N_('Value to set (boolean, default true)')
          param :waves, String,
                desc: N_('Canary count, then cumulative percentages or counts up to 100%%, e.g. "1, 5%%, 25%%, 100%%"')
          param :failure_threshold, :number, desc: N_('Failed hosts allowed per wave, percent of the wave (0-100)')
          param :wave_timeout, :number, desc: N_('Seconds a wave waits for reports (60-604800)')
          param :promotion, %w[automatic approved], desc: N_('Start the next wave by itself, or after an approval')
        end
      end

      api :POST, '/pvc_rollouts/', N_('Create a rollout (a draft; start it with /start)')
      param_group :pvc_rollout, as: :create
      def create
        result = ForemanPvc::ForemanWiring.params.call(rollout_params)
        return render_errors(result.errors) unless result.ok?

        rollout = ForemanPvc::StagedRollout.new(result.attributes.merge(created_by: User.current.login))
        return render_errors('base' => rollout.errors.full_messages) unless rollout.save

        render json: ForemanPvc::RolloutPresenter.new(rollout).detail, status: :created
      end

      api :POST, '/pvc_rollouts/:id/start/', N_('Resolve the search, plan the waves and start the canary wave')
      param :id, :identifier, required: true
      def start
        command
      end

      api :POST, '/pvc_rollouts/:id/pause/', N_('Pause a running rollout')
      param :id, :identifier, required: true
      param :reason, String, desc: N_('Why (shown on the rollout)')
      def pause
        command
      end

      api :POST, '/pvc_rollouts/:id/resume/', N_('Resume; after a failed gate this accepts the wave and goes on')
      param :id, :identifier, required: true
      def resume
        command
      end

      api :POST, '/pvc_rollouts/:id/promote/', N_('Approve the next wave of a rollout with approved promotion')
      param :id, :identifier, required: true
      def promote
        command
      end

      api :POST, '/pvc_rollouts/:id/abort/', N_('Abort for good')
      param :id, :identifier, required: true
      param :remove_flag, :bool, desc: N_('Also remove the flag parameter from every host that got it')
      param :reason, String, desc: N_('Why (shown on the rollout)')
      def abort
        command
      end

      api :POST, '/pvc_rollouts/:id/refresh/', N_('Read the current wave\'s reports now and apply its gate')
      param :id, :identifier, required: true
      def refresh
        command
      end

      private

      def rollout_params
        params.require(:pvc_rollout).permit(*ForemanPvc::Rollout::Params::FIELDS).to_h
      end

      def command
        error = run_command
        return render_errors('base' => [error]) if error

        render json: ForemanPvc::RolloutPresenter.new(@rollout.reload).detail
      end

      def render_errors(errors)
        render json: { error: { message: errors.values.flatten.join('; '), errors: errors } },
               status: :unprocessable_entity
      end
    end
  end
end
