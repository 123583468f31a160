# frozen_string_literal: true

require 'openssl'
require 'socket'

# A one-request HTTPS server on 127.0.0.1 with a throw-away CA, to check the
# bridge client's certificate verification for real (WebMock stubs below
# TLS and cannot).
class TlsServer
  attr_reader :port, :ca_file, :requests

  def initialize(dir, answer)
    @answer = answer
    @requests = []
    ca_key, ca_cert = self.class.ca
    @ca_file = File.join(dir, 'ca.pem')
    File.write(@ca_file, ca_cert.to_pem)
    key = OpenSSL::PKey::RSA.new(2048)
    context = OpenSSL::SSL::SSLContext.new
    context.cert = self.class.leaf(key, ca_key, ca_cert)
    context.key = key
    @tcp = TCPServer.new('127.0.0.1', 0)
    @port = @tcp.addr[1]
    @server = OpenSSL::SSL::SSLServer.new(@tcp, context)
    @thread = Thread.new { serve }
  end

  def self.ca
    key = OpenSSL::PKey::RSA.new(2048)
    cert = certificate(key.public_key, '/CN=Test Puppet CA', 1)
    cert.issuer = cert.subject
    ext = OpenSSL::X509::ExtensionFactory.new(cert, cert)
    cert.add_extension(ext.create_extension('basicConstraints', 'CA:TRUE', true))
    cert.add_extension(ext.create_extension('keyUsage', 'keyCertSign, cRLSign', true))
    cert.sign(key, OpenSSL::Digest.new('SHA256'))
    [key, cert]
  end

  def self.leaf(key, ca_key, ca_cert)
    cert = certificate(key.public_key, '/CN=localhost', 2)
    cert.issuer = ca_cert.subject
    ext = OpenSSL::X509::ExtensionFactory.new(ca_cert, cert)
    cert.add_extension(ext.create_extension('subjectAltName', 'DNS:localhost,IP:127.0.0.1'))
    cert.sign(ca_key, OpenSSL::Digest.new('SHA256'))
    cert
  end

  def self.certificate(public_key, subject, serial)
    cert = OpenSSL::X509::Certificate.new
    cert.version = 2
    cert.serial = serial
    cert.subject = OpenSSL::X509::Name.parse(subject)
    cert.public_key = public_key
    cert.not_before = Time.now - 60
    cert.not_after = Time.now + 3600
    cert
  end

  def stop
    @thread.kill
    @server.close
  end

  private

  def serve
    loop do
      socket = @server.accept
      head = +''
      head << socket.gets until head.end_with?("\r\n\r\n")
      length = head[/content-length: *(\d+)/i, 1].to_i
      @requests << [head, socket.read(length)]
      socket.write("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: #{@answer.bytesize}\r\n" \
                   "Connection: close\r\n\r\n#{@answer}")
      socket.close
    rescue OpenSSL::SSL::SSLError, IOError, SystemCallError
      next # a client that refused our certificate; wait for the next
    end
  end
end
