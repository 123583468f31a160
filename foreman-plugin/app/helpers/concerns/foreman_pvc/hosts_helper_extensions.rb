# frozen_string_literal: true

module ForemanPvc
  # The hosts list's bulk action: opens the new rollout form with the
  # selected hosts as its search.
  module HostsHelperExtensions
    def pvc_rollout_multiple_actions
      return [] unless authorized_for(controller: 'foreman_pvc/rollouts', action: 'new')

      [{ action: [_('Start rollout for selected hosts'), foreman_pvc.new_rollout_path, false], priority: 1100 }]
    end
  end
end
