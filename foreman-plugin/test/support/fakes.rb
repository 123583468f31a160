# frozen_string_literal: true

# In-memory stand-ins for the ports of ForemanPvc::RolloutRunner that need
# Foreman or a bridge. The database side (models, the bridge's report
# tables) is always the real PostgreSQL.
module Fakes
  Host = Struct.new(:id, :name)

  # Foreman's host search: a fixed list per search string.
  class Directory
    def initialize(by_search)
      @by_search = by_search
    end

    def resolve(search)
      @by_search.fetch(search, [])
    end
  end

  # Host parameters: what was set and removed, in order.
  class Flags
    attr_reader :values, :calls

    def initialize
      @values = {}
      @calls = []
    end

    def set(ids, name, value)
      @calls << [:set, ids.sort, name, value]
      ids.each { |id| @values[[id, name]] = value }
      ids
    end

    def remove(ids, name)
      @calls << [:remove, ids.sort, name]
      ids.each { |id| @values.delete([id, name]) }
      ids
    end
  end

  # The bridge's converge API: records requests, names some hosts unknown,
  # or fails like an unreachable bridge.
  class Bridge
    attr_reader :requests
    attr_accessor :unknown, :failure, :done

    def initialize
      @requests = []
      @unknown = []
      @failure = nil
      @done = false
    end

    # Every request is done or none is, as the test says.
    def converge_progress(id)
      raise ForemanPvc::Adapters::BridgeClient::Error, failure if failure
      return nil unless id.between?(1, @requests.size)

      { 'id' => id, 'done' => done }
    end

    def converge(certnames, within_secs:)
      raise ForemanPvc::Adapters::BridgeClient::Error, failure if failure

      @requests << [certnames, within_secs]
      ForemanPvc::Adapters::BridgeClient::Converge.new(id: @requests.size, hosts: certnames.size - unknown.size,
                                                       unknown_hosts: certnames & unknown)
    end
  end

  # A clock the test moves.
  class Clock
    attr_accessor :now

    def initialize(now)
      @now = now
    end

    def call
      @now
    end

    def advance(secs)
      @now += secs
    end
  end
end
