# frozen_string_literal: true

require 'json'
require 'net/http'
require 'openssl'
require 'uri'

module ForemanPvc
  module Adapters
    # Asks the bridge to run a wave's hosts soon ("converge": all of them
    # within T, spread so the puppetservers stay within capacity) and reads
    # how far such a request got. Uses the bridge's admin API, which needs
    # the admin bearer token; the bridge is checked against a CA file (the
    # Puppet CA) rather than the public roots.
    class BridgeClient
      class Error < StandardError; end

      Converge = Struct.new(:id, :hosts, :unknown_hosts, keyword_init: true)

      def initialize(url:, token:, ca_file: nil, timeout: 10)
        @base = URI(url.to_s.chomp('/'))
        raise Error, "bridge URL #{url.inspect} is not http(s)" unless %w[http https].include?(@base.scheme)
        raise Error, 'bridge admin token is not set' if token.to_s.strip.empty?

        @token = token.to_s.strip
        @ca_file = ca_file.to_s.empty? ? nil : ca_file.to_s
        @timeout = timeout
      end

      # Certnames must all have run within `within_secs`.
      def converge(certnames, within_secs:)
        raise Error, 'a converge request needs at least one host' if certnames.empty?

        body = request(Net::HTTP::Post, '/admin/converge', { certnames: certnames, within_secs: within_secs })
        Converge.new(id: body.fetch('id'), hosts: body.fetch('hosts'), unknown_hosts: body.fetch('unknown_hosts', []))
      rescue KeyError => e
        raise Error, "bridge converge answer is missing #{e.key}"
      end

      # {"hosts", "started", "finished", "failed", "done", …} as the bridge
      # answers, or nil for an id it does not know.
      def converge_progress(id)
        request(Net::HTTP::Get, "/admin/converge/#{Integer(id)}")
      rescue NotFound
        nil
      end

      class NotFound < Error; end

      private

      def request(klass, path, payload = nil)
        req = klass.new(URI("#{@base}#{path}"))
        req['Authorization'] = "Bearer #{@token}"
        req['Accept'] = 'application/json'
        if payload
          req['Content-Type'] = 'application/json'
          req.body = JSON.generate(payload)
        end
        answer(http.request(req), "#{klass::METHOD} #{path}")
      rescue OpenSSL::SSL::SSLError, SystemCallError, Net::OpenTimeout, Net::ReadTimeout, IOError, SocketError => e
        raise Error, "bridge #{@base}: #{e.class}: #{e.message}"
      end

      def http
        http = Net::HTTP.new(@base.host, @base.port)
        http.open_timeout = @timeout
        http.read_timeout = @timeout
        if @base.scheme == 'https'
          http.use_ssl = true
          http.verify_mode = OpenSSL::SSL::VERIFY_PEER
          http.ca_file = @ca_file if @ca_file
        end
        http
      end

      # The bridge explains a refusal in the body; pass that on, but never
      # the request (it carries the token).
      def answer(response, what)
        case response
        when Net::HTTPSuccess then JSON.parse(response.body.to_s)
        when Net::HTTPNotFound then raise NotFound, "#{what}: 404"
        else raise Error, "#{what}: #{response.code} #{response.body.to_s[0, 300].strip}"
        end
      rescue JSON::ParserError => e
        raise Error, "#{what}: the answer is not JSON (#{e.message[0, 100]})"
      end
    end
  end
end
