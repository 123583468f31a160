# frozen_string_literal: true

require 'test_helper'
require 'tmpdir'
require_relative '../support/tls_server'

# The bridge client: what it sends (WebMock) and whom it trusts (a real
# TLS server with its own CA).
class BridgeClientTest < ActiveSupport::TestCase
  Client = ForemanPvc::Adapters::BridgeClient
  TOKEN = 'admin-token-0123456789abcdef'
  URL = 'https://bridge.example.com:8443'

  def client(**opts)
    Client.new(url: URL, token: TOKEN, **opts)
  end

  test 'a converge request names the hosts and the deadline, with the admin token' do
    stub = stub_request(:post, "#{URL}/admin/converge")
           .with(body: { certnames: %w[a.example.com b.example.com], within_secs: 1800 }.to_json,
                 headers: { 'Authorization' => "Bearer #{TOKEN}", 'Content-Type' => 'application/json' })
           .to_return(status: 201, body: { id: 7, hosts: 1, unknown_hosts: ['b.example.com'], created_ms: 1 }.to_json)
    converge = client.converge(%w[a.example.com b.example.com], within_secs: 1800)
    assert_requested stub
    assert_equal [7, 1, ['b.example.com']], [converge.id, converge.hosts, converge.unknown_hosts]
  end

  test 'progress of a converge request, and nil for one the bridge does not know' do
    stub_request(:get, "#{URL}/admin/converge/7").with(headers: { 'Authorization' => "Bearer #{TOKEN}" })
                                                 .to_return(status: 200, body: { id: 7, finished: 3,
                                                                                 done: false }.to_json)
    stub_request(:get, "#{URL}/admin/converge/8").to_return(status: 404, body: 'no converge request 8')
    assert_equal 3, client.converge_progress(7)['finished']
    assert_nil client.converge_progress(8)
  end

  test "refusals carry the bridge's reason and never the token" do
    stub_request(:post, "#{URL}/admin/converge").to_return(status: 401, body: 'admin endpoint: needs the admin token')
    error = assert_raises(Client::Error) { client.converge(['a.example.com'], within_secs: 60) }
    assert_match(/401 admin endpoint: needs the admin token/, error.message)
    refute_includes error.message, TOKEN
  end

  test 'answers that are not what the API promises are errors' do
    stub_request(:post, "#{URL}/admin/converge").to_return(status: 201, body: '<html>proxy</html>')
    assert_raises(Client::Error) { client.converge(['a.example.com'], within_secs: 60) }
    stub_request(:post, "#{URL}/admin/converge").to_return(status: 201, body: '{"hosts": 1}')
    assert_match(/missing id/, assert_raises(Client::Error) do
                                 client.converge(['a.example.com'], within_secs: 60)
                               end.message)
  end

  test 'configuration mistakes are caught before any request' do
    assert_raises(Client::Error) { Client.new(url: 'ftp://bridge', token: TOKEN) }
    assert_raises(Client::Error) { Client.new(url: URL, token: ' ') }
    assert_raises(Client::Error) { client.converge([], within_secs: 60) }
  end

  test 'an unreachable bridge is an error, not an exception from the socket' do
    WebMock.allow_net_connect!
    port = TCPServer.open('127.0.0.1', 0) { |s| s.addr[1] } # free, and closed again
    error = assert_raises(Client::Error) do
      Client.new(url: "http://127.0.0.1:#{port}", token: TOKEN, timeout: 2).converge(['a'], within_secs: 60)
    end
    assert_match(/ECONNREFUSED/, error.message)
  ensure
    WebMock.disable_net_connect!
  end

  test 'TLS: the bridge is trusted through the CA file, and only through it' do
    WebMock.allow_net_connect!
    Dir.mktmpdir do |dir|
      server = TlsServer.new(dir, { id: 9, hosts: 1, unknown_hosts: [] }.to_json)
      url = "https://localhost:#{server.port}"
      converge = Client.new(url: url, token: TOKEN, ca_file: server.ca_file, timeout: 5)
                       .converge(['a.example.com'], within_secs: 60)
      assert_equal 9, converge.id
      head, body = server.requests.first
      assert_match(%r{\APOST /admin/converge HTTP/1.1}, head)
      assert_match(/^Authorization: Bearer #{TOKEN}\r$/i, head)
      assert_equal({ 'certnames' => ['a.example.com'], 'within_secs' => 60 }, JSON.parse(body))

      other_ca = File.join(dir, 'other.pem')
      File.write(other_ca, TlsServer.ca.last.to_pem)
      error = assert_raises(Client::Error) do
        Client.new(url: url, token: TOKEN, ca_file: other_ca, timeout: 5).converge(['a'], within_secs: 60)
      end
      assert_match(/certificate verify failed/, error.message)
      assert_equal 1, server.requests.size, 'a bridge that failed verification got the token'
    ensure
      server&.stop
    end
  ensure
    WebMock.disable_net_connect!
  end
end
