# frozen_string_literal: true

require 'digest'

module ForemanPvc
  module Rollout
    # Orders hosts by a hash of their name. Alphabetical order would put
    # whole naming schemes (db01…db09) into one wave; database order would
    # change when hosts are rebuilt. A hash spreads every kind of host over
    # all waves and gives the same order for the same names, every time.
    module HostOrder
      module_function

      def key(hostname)
        name = hostname.to_s.downcase
        [Digest::SHA256.hexdigest(name), name]
      end

      # Hosts (strings, or objects answering #name) in rollout order,
      # without duplicates (names compared case-insensitively, as DNS does).
      def sort(hosts)
        hosts.uniq { |h| name_of(h).downcase }.sort_by { |h| key(name_of(h)) }
      end

      def name_of(host)
        host.respond_to?(:name) ? host.name : host.to_s
      end
    end
  end
end
