# frozen_string_literal: true

require 'json'

module ForemanPvc
  module Adapters
    # Reads the run reports agents send to the bridge. The bridge keeps them
    # in its `pvc` schema in Foreman's database, with what Foreman's own
    # config reports lack: the run's start and Puppet's
    # cached_catalog_status. Read-only; the bridge owns these tables.
    class BridgeReports
      # Puppet's words for a run it refused to start.
      DISABLED = 'administratively disabled'

      def initialize(connection)
        @connection = connection
      end

      # { certname => [Rollout::Report, …] } of runs started at or after `since`.
      def since(certnames, since)
        return {} if certnames.empty?

        rows = @connection.select_all(<<~SQL.squish, 'pvc reports', [array(certnames), since])
          SELECT id, certname, started, exit_code, resources, cached_catalog_status, log_tail
          FROM pvc.reports
          WHERE certname = ANY($1::text[]) AND started >= $2
          ORDER BY certname, started
        SQL
        rows.map { |row| report(row) }.group_by(&:host)
      end

      # { certname => Time } of each host's last contact: a facts or config
      # report upload (the check-ins), or a run report from its agent. The
      # agent's /report is no check-in for the bridge, yet proves the host
      # is there.
      def last_seen(certnames)
        return {} if certnames.empty?

        rows = @connection.select_rows(<<~SQL.squish, 'pvc last contact', [array(certnames)])
          SELECT certname, max(at) FROM (
            SELECT certname, last_at AS at FROM pvc.checkins WHERE certname = ANY($1::text[])
            UNION ALL
            SELECT certname, max(received) FROM pvc.reports WHERE certname = ANY($1::text[]) GROUP BY certname
          ) contacts GROUP BY certname
        SQL
        rows.to_h.transform_values { |at| time(at) }
      end

      private

      def array(names)
        "{#{names.map { |n| %("#{n.to_s.gsub(/["\\]/) { |c| "\\#{c}" }}") }.join(',')}}"
      end

      def report(row)
        resources = row['resources'].is_a?(String) ? JSON.parse(row['resources']) : row['resources']
        Rollout::Report.new(
          id: row['id'], host: row['certname'], started_at: time(row['started']),
          cached_catalog_status: row['cached_catalog_status'], exit_code: row['exit_code']&.to_i,
          failed_resources: resources.is_a?(Hash) ? resources['failed']&.to_i : nil,
          puppet_disabled: row['cached_catalog_status'].nil? && row['log_tail'].to_s.include?(DISABLED)
        )
      end

      def time(value)
        value.is_a?(String) ? Time.parse(value) : value
      end
    end
  end
end
