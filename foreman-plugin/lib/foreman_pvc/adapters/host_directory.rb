# frozen_string_literal: true

module ForemanPvc
  module Adapters
    # Resolves a Foreman host search once, as the user who starts the
    # rollout, so the rollout can only ever touch hosts that user may edit.
    # Runs only inside Foreman (scoped_search, Authorizable).
    class HostDirectory
      Host = Struct.new(:id, :name, keyword_init: true)

      def initialize(user)
        @user = user
      end

      def resolve(search)
        ::User.as(@user.login) do
          ::Host::Managed.authorized(:edit_hosts, ::Host::Managed)
                         .search_for(search)
                         .reorder(nil)
                         .pluck(:id, :name, :certname)
                         .map { |id, name, certname| Host.new(id: id, name: certname.presence || name) }
        end
      end
    end
  end
end
