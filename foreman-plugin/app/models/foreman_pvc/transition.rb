# frozen_string_literal: true

module ForemanPvc
  # One state change of a rollout: who, when, why. Written once, never edited.
  class Transition < ::ApplicationRecord
    self.table_name = 'foreman_pvc_transitions'

    belongs_to :rollout, class_name: 'ForemanPvc::StagedRollout', inverse_of: :transitions

    def readonly?
      persisted?
    end
  end
end
