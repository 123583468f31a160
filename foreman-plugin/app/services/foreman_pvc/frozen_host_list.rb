# frozen_string_literal: true

module ForemanPvc
  # Stores a rollout's hosts once, split into its planned waves, in
  # rollout order. Later changes to the search's matches do not move a
  # rollout that is under way: what was planned is what runs.
  class FrozenHostList
    def initialize(rollout)
      @rollout = rollout
    end

    # hosts: [#id, #name] as Foreman's search resolved them.
    def store!(hosts, now)
      raise RolloutRunner::Error, "the search #{@rollout.search.inspect} matches no host you may edit" if hosts.empty?

      position = 0
      Rollout::WavePlanner.new(@rollout.waves).plan(hosts).each_with_index do |members, index|
        wave = @rollout.wave_records.create!(position: index, state: 'pending')
        # Our own table, possibly thousands of rows: one statement.
        WaveHost.insert_all!(members.map do |host|
          position += 1
          { wave_id: wave.id, rollout_id: @rollout.id, host_id: host.id, hostname: host.name, position: position }
        end)
      end
      @rollout.update!(resolved_at: now, host_count: position)
    end
  end
end
