# frozen_string_literal: true

require "json"
require "net/http"
require "uri"

module TaskerCore
  module Transport
    # Talks to `tasker serve` over HTTP (POST /v1/rpc/{method}): the same
    # JSON documents as the embedded transport, and no native code, so it
    # is safe in forking servers. One keep-alive connection per thread.
    class Socket
      def initialize(config)
        @config = config
        @uri = URI.parse(config.server_url.to_s)
        raise ConfigurationError, "server_url must be an http(s) URL, got #{config.server_url.inspect}" unless @uri.is_a?(URI::HTTP)

        @key = :"tasker_core_http_#{object_id}"
      end

      # Calls method with params (a Hash, or a JSON String) and returns the
      # result document as a Hash.
      def call(method, params = nil, timeout: nil)
        timeout = (timeout || @config.call_timeout).to_f
        body = params.is_a?(String) ? params : JSON.generate(params || {})
        req = Net::HTTP::Post.new("#{@uri.path.chomp('/')}/v1/rpc/#{method}")
        req["Content-Type"] = "application/json"
        req["Accept"] = "application/json"
        req["Tasker-Timeout-Ms"] = (timeout * 1000).to_i.to_s
        req["Authorization"] = "Bearer #{@config.api_token}" if @config.api_token && !@config.api_token.empty?
        req.body = body
        res = request(req, timeout)
        doc = parse(res)
        return doc if res.is_a?(Net::HTTPSuccess)

        raise TaskerCore.core_error(doc["error"] || { "code" => "internal", "message" => "HTTP #{res.code}" })
      end

      def close
        http = Thread.current[@key]
        Thread.current[@key] = nil
        http&.finish if http&.started?
      rescue IOError
        nil
      end

      def pid_ok?
        true
      end

      private

      def connection(timeout)
        http = Thread.current[@key]
        if http.nil? || Thread.current[:"#{@key}_pid"] != Process.pid
          http = Net::HTTP.new(@uri.host, @uri.port)
          http.use_ssl = @uri.scheme == "https"
          http.keep_alive_timeout = 30
          Thread.current[@key] = http
          Thread.current[:"#{@key}_pid"] = Process.pid
        end
        http.open_timeout = 5
        http.read_timeout = timeout + 5 # the server answers "timeout" first
        http.write_timeout = timeout
        http.start unless http.started?
        http
      end

      def request(req, timeout)
        retried = false
        begin
          connection(timeout).request(req)
        rescue Errno::ECONNRESET, Errno::EPIPE, EOFError, IOError => e
          # A kept-alive connection the server closed: reconnect once.
          Thread.current[@key] = nil
          raise ConnectionError, "tasker serve at #{@uri}: #{e.class}: #{e.message}" if retried

          retried = true
          retry
        rescue Errno::ECONNREFUSED, Errno::EHOSTUNREACH, SocketError, Net::OpenTimeout => e
          Thread.current[@key] = nil
          raise ConnectionError, "cannot reach tasker serve at #{@uri}: #{e.class}: #{e.message}"
        rescue Net::ReadTimeout => e
          Thread.current[@key] = nil
          raise TimeoutError.new("tasker serve did not answer in time: #{e.message}", code: "timeout")
        end
      end

      def parse(res)
        JSON.parse(res.body.to_s)
      rescue JSON::ParserError
        { "error" => { "code" => "internal", "message" => "HTTP #{res.code}: not a JSON answer" } }
      end
    end
  end
end
