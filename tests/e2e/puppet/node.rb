#!/usr/bin/ruby
# frozen_string_literal: true

# The end-to-end puppetserver's external node classifier, behaving as
# Foreman's stock node.rb does for what the tests use: `node.rb <certname>`
# GETs `<:url>/node/<certname>?format=yml` with the server's client
# certificate and prints the body (with a final newline); any other answer
# or error is a message on stderr and exit 1 (Puppet: "node not found").
#
# Settings: `foreman.yaml` beside this script (Symbol keys, as Foreman's):
# `:url`, `:ssl_ca`, `:ssl_cert`, `:ssl_key`, `:timeout`, and `:enc_log`, a
# file that gets one line per call: `<epoch> <certname> <status>`. They are
# read at every call: the bridge may start after the server.
require 'net/http'
require 'openssl'
require 'uri'
require 'yaml'

SETTINGS_FILE = File.join(__dir__, 'foreman.yaml')

def settings
  YAML.safe_load(File.read(SETTINGS_FILE), permitted_classes: [Symbol]) || {}
end

def enc_log(settings, certname, status)
  path = settings[:enc_log].to_s
  return if path.empty?

  File.open(path, 'a') { |f| f.puts(format('%.3f %s %s', Time.now.to_f, certname, status)) }
rescue SystemCallError => e
  warn "node.rb: cannot write #{path}: #{e.message}"
end

def http_for(settings, uri)
  http = Net::HTTP.new(uri.host, uri.port)
  timeout = settings[:timeout] || 10
  http.open_timeout = timeout
  http.read_timeout = timeout
  if uri.scheme == 'https'
    http.use_ssl = true
    # Foreman's script skips verification without :ssl_ca; here the bridge
    # is always checked against the Puppet CA when one is given.
    http.verify_mode = OpenSSL::SSL::VERIFY_PEER
    http.ca_file = settings[:ssl_ca] unless settings[:ssl_ca].to_s.empty?
    unless settings[:ssl_cert].to_s.empty? || settings[:ssl_key].to_s.empty?
      http.cert = OpenSSL::X509::Certificate.new(File.read(settings[:ssl_cert]))
      http.key = OpenSSL::PKey.read(File.read(settings[:ssl_key]))
    end
  end
  http
end

def classify(certname)
  conf = settings
  url = conf[:url].to_s
  raise "no :url in #{SETTINGS_FILE}" if url.empty?

  uri = URI.parse("#{url.chomp('/')}/node/#{URI.encode_www_form_component(certname)}?format=yml")
  begin
    response = http_for(conf, uri).request(Net::HTTP::Get.new(uri.request_uri))
  rescue StandardError => e
    enc_log(conf, certname, 'error')
    raise "#{uri}: #{e.class}: #{e.message}"
  end
  enc_log(conf, certname, response.code)
  raise "#{uri} answered #{response.code}: #{response.body.to_s[0, 500]}" unless response.code == '200'

  body = response.body.to_s
  body.end_with?("\n") ? body : "#{body}\n"
end

certname = ARGV[0].to_s
if certname.empty?
  warn 'usage: node.rb <certname>'
  exit 1
end
begin
  $stdout.write(classify(certname))
rescue StandardError => e
  warn "node.rb: #{e.message}"
  exit 1
end
