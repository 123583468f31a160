# frozen_string_literal: true

module ForemanPvc
  module Rollout
    # The hosts list's selection as a Foreman search for the new rollout
    # form: the selected ids, or the list's own search when "all" was chosen.
    module Selection
      module_function

      def search(host_ids: nil, search: nil)
        ids = Array(host_ids).map { |id| Integer(id.to_s, 10) }.select(&:positive?).uniq
        return "id ^ (#{ids.join(', ')})" if ids.any?

        search.to_s.strip
      rescue ArgumentError
        raise InvalidError, "host ids: #{host_ids.inspect} are not all numbers"
      end
    end
  end
end
