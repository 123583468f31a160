# frozen_string_literal: true

module ForemanPvc
  module Adapters
    # Sets and removes the flag as a host parameter through Foreman's own
    # models, one host at a time: validations run, the change lands in
    # Foreman's audit log under the acting user, and the bridge's change
    # feed sees an ordinary parameter write. Bulk SQL would skip all three.
    # Runs only inside Foreman.
    class HostFlags
      def initialize(user)
        @user = user
      end

      # Sets `name` = value (typed boolean) on the hosts; returns the ids set.
      def set(host_ids, name, value)
        each_host(host_ids) do |host|
          param = host.host_parameters.find_or_initialize_by(name: name)
          param.key_type = 'boolean'
          param.value = value
          param.save!
        end
      end

      # Removes `name` from the hosts (abort): their inherited value, if
      # any, applies again.
      def remove(host_ids, name)
        each_host(host_ids) do |host|
          host.host_parameters.where(name: name).find_each(&:destroy!)
        end
      end

      private

      def each_host(host_ids)
        ::User.as(@user.login) do
          ::Host::Managed.authorized(:edit_hosts, ::Host::Managed).where(id: host_ids).find_each.map do |host|
            ::HostParameter.transaction { yield host }
            host.id
          end
        end
      end
    end
  end
end
