# frozen_string_literal: true

require "json"
require "net/http"
require "securerandom"
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
      #
      # A call whose connection drops is sent again once. initialize_task is
      # made safe to repeat: without an idempotency_key of the caller's, a
      # key is generated for the call, so a retry of a request the server
      # did carry out returns that task instead of creating a second one
      # (and "created" stays true).
      def call(method, params = nil, timeout: nil)
        timeout = (timeout || @config.call_timeout).to_f
        generated = false
        if method.to_s == "initialize_task" && params.is_a?(Hash) && blank_key?(params)
          params = params.reject { |k, _| k.to_s == "idempotency_key" }
          params["idempotency_key"] = "#{KEY_PREFIX}#{SecureRandom.uuid}"
          generated = true
        end
        body = params.is_a?(String) ? params : JSON.generate(params || {})
        req = Net::HTTP::Post.new("#{@uri.path.chomp('/')}/v1/rpc/#{method}")
        req["Content-Type"] = "application/json"
        req["Accept"] = "application/json"
        req["Tasker-Timeout-Ms"] = (timeout * 1000).to_i.to_s
        req["Authorization"] = "Bearer #{@config.api_token}" if @config.api_token && !@config.api_token.empty?
        req.body = body
        res, retried = request(req, timeout)
        doc = parse(res)
        if res.is_a?(Net::HTTPSuccess)
          # The key is this call's own: an existing task can only be the one
          # the dropped attempt created.
          doc["created"] = true if generated && retried && doc["created"] == false
          return doc
        end

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

      # Prefix of the idempotency keys generated for initialize_task.
      KEY_PREFIX = "tasker-ruby-"

      private

      def blank_key?(params)
        key = params.key?("idempotency_key") ? params["idempotency_key"] : params[:idempotency_key]
        key.nil? || key.to_s.empty?
      end

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
          [connection(timeout).request(req), retried]
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
