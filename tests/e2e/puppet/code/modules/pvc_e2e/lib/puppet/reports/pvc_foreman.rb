# frozen_string_literal: true

# Report processor `pvc_foreman`: posts every report to
# `<:url>/api/config_reports` in Foreman's config_report format, with the
# puppetserver's certificate, as Foreman's own report processor does. Its
# settings are the ENC script's (`foreman.yaml` in the server's confdir:
# `:url`, `:ssl_ca`, `:ssl_cert`, `:ssl_key`, `:report_timeout`), read for
# every report so that a bridge started after the server is found.
require 'json'
require 'net/http'
require 'openssl'
require 'uri'
require 'yaml'

Puppet::Reports.register_report(:pvc_foreman) do
  desc 'Posts reports to a Foreman-compatible /api/config_reports (pvc-bridge).'

  def process
    settings = pvc_settings
    url = settings[:url].to_s
    raise Puppet::Error, "pvc_foreman: no :url in #{pvc_settings_file}" if url.empty?

    body = JSON.generate('config_report' => pvc_config_report)
    response = pvc_post(settings, URI.join("#{url.chomp('/')}/", 'api/config_reports'), body)
    unless response.code.to_i.between?(200, 299)
      raise Puppet::Error, "pvc_foreman: #{url}/api/config_reports answered #{response.code} for #{host}: #{response.body.to_s[0, 500]}"
    end

    Puppet.info "pvc_foreman: report for #{host} posted (#{response.code})"
  end

  # The payload's `config_report` object.
  def pvc_config_report
    {
      'host' => host,
      'reported_at' => time.utc.strftime('%Y-%m-%d %H:%M:%S UTC'),
      'status' => pvc_status,
      'metrics' => pvc_metrics,
      'logs' => pvc_logs,
    }
  end

  private

  def pvc_settings_file
    File.join(Puppet[:confdir], 'foreman.yaml')
  end

  def pvc_settings
    YAML.safe_load(File.read(pvc_settings_file), permitted_classes: [Symbol]) || {}
  end

  def pvc_post(settings, uri, body)
    http = Net::HTTP.new(uri.host, uri.port)
    timeout = settings[:report_timeout] || settings[:timeout]
    if timeout
      http.open_timeout = timeout
      http.read_timeout = timeout
    end
    if uri.scheme == 'https'
      http.use_ssl = true
      http.verify_mode = OpenSSL::SSL::VERIFY_PEER
      http.ca_file = settings[:ssl_ca] unless settings[:ssl_ca].to_s.empty?
      unless settings[:ssl_cert].to_s.empty? || settings[:ssl_key].to_s.empty?
        http.cert = OpenSSL::X509::Certificate.new(File.read(settings[:ssl_cert]))
        http.key = OpenSSL::PKey.read(File.read(settings[:ssl_key]))
      end
    end
    request = Net::HTTP::Post.new(uri.request_uri)
    request['Accept'] = 'application/json,version=2'
    request.content_type = 'application/json'
    request.body = body
    http.request(request)
  end

  # {group => {name => value}} of every metric of the report.
  def pvc_metrics
    (metrics || {}).each_with_object({}) do |(_, metric), out|
      out[metric.name] = metric.values.each_with_object({}) { |(name, _label, value), m| m[name.to_s] = value }
    end
  end

  def pvc_metric(group, name)
    metric = (metrics || {})[group]
    return 0 unless metric

    found = metric.values.find { |n, _, _| n.to_s == name }
    found ? found[2].to_i : 0
  end

  # Foreman's ConfigReport status fields, in its order, each with the report
  # metric it counts ([group, name]). (Methods, not constants: the block is
  # not a class body, and its constants would land on Object.)
  def pvc_status_sources
    [
      ['applied', %w[changes total]],
      ['restarted', %w[resources restarted]],
      ['failed', %w[resources failed]],
      ['failed_restarts', %w[resources failed_to_restart]],
      ['skipped', %w[resources skipped]],
      ['pending', %w[events noop]],
    ]
  end

  def pvc_status
    status = pvc_status_sources.to_h { |field, source| [field, pvc_metric(*source)] }
    # A run that failed before applying anything (no catalog) has no failed
    # resources but is a failure; so is an error logged by Puppet itself.
    status['failed'] += 1 if self.status == 'failed' && status['failed'].zero?
    status['failed'] += logs.count { |log| log.level.to_s == 'err' && log.source.to_s =~ /Puppet\z/ }
    status
  end

  def pvc_logs
    # Like Foreman's processor: no debug lines, no run summary lines.
    summary = /\A(Finished catalog run|Applied catalog) in \d+\.\d+ seconds\z/
    logs.reject { |log| log.level == :debug || log.message.to_s =~ summary }.map do |log|
      {
        'log' => {
          'level' => log.level.to_s,
          'sources' => { 'source' => log.source.to_s },
          'messages' => { 'message' => log.message.to_s },
        },
      }
    end
  end
end
