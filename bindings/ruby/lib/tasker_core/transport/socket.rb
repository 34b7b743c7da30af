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
      # A call whose connection drops after it was sent is sent again once
      # only when repeating it is safe (IDEMPOTENT: reads, report_results,
      # extend_leases, finalize, ...). initialize_task is made safe to
      # repeat: without an idempotency_key of the caller's, a key is
      # generated for the call, so a retry of a request the server did carry
      # out returns that task instead of creating a second one (and
      # "created" stays true). Any other call (claim_steps, queue_claim,
      # events_poll, ...) raises ConnectionLostError instead: a second claim
      # would leave the steps the first one took orphaned until their lease
      # expires, counted as lost attempts. A connection the server had
      # closed before the call was written (EPIPE) is reopened for any call.
      def call(method, params = nil, timeout: nil)
        timeout = (timeout || @config.call_timeout).to_f
        method = method.to_s
        generated = false
        if method == "initialize_task" && params.is_a?(Hash) && blank_key?(params)
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
        res, retried = request(req, timeout, method, repeatable?(method, params))
        doc = parse(res)
        if res.is_a?(Net::HTTPSuccess)
          # The key is this call's own: an existing task can only be the one
          # the dropped attempt created.
          doc["created"] = true if generated && retried && doc["created"] == false
          return doc
        end

        raise TaskerCore.core_error(doc["error"] || { "code" => "internal", "message" => "HTTP #{res.code}" })
      end

      # Creates many tasks with POST /v1/tasks/batch: requests is an Array of
      # request Hashes; returns the batch document. Sent again after a
      # dropped connection only when every request has an idempotency key.
      def create_tasks(requests, timeout: nil)
        timeout = (timeout || @config.call_timeout).to_f
        req = Net::HTTP::Post.new("#{@uri.path.chomp('/')}/v1/tasks/batch")
        req["Content-Type"] = "application/json"
        req["Accept"] = "application/json"
        req["Authorization"] = "Bearer #{@config.api_token}" if @config.api_token && !@config.api_token.empty?
        req.body = JSON.generate(requests)
        repeatable = requests.all? { |r| r.is_a?(Hash) && !blank_key?(r) }
        res, = request(req, timeout, "create_tasks", repeatable)
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

      # Prefix of the idempotency keys generated for initialize_task.
      KEY_PREFIX = "tasker-ruby-"

      # Methods sent again after a dropped connection: repeating them
      # changes nothing (a repeated report is discarded, a lease extended
      # twice is extended, a finalize decides on the same state) or only
      # reads. initialize_task too, when it carries an idempotency key.
      IDEMPOTENT = %w[ping info find_handler task transitions explain queue_list schedules report_results extend_leases
                      finalize yield rescue queue_ack events_unsubscribe].freeze

      # Whether a call of method with params may be sent twice.
      def repeatable?(method, params)
        return true if IDEMPOTENT.include?(method)
        return false unless method == "initialize_task"

        params = JSON.parse(params) if params.is_a?(String)
        params.is_a?(Hash) && !blank_key?(params)
      rescue JSON::ParserError
        false
      end

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

      def request(req, timeout, method, repeatable)
        retried = false
        begin
          [connection(timeout).request(req), retried]
        rescue Errno::ECONNRESET, Errno::EPIPE, EOFError, IOError => e
          # A kept-alive connection the server closed: reconnect once, unless
          # the server may have carried out a call that must not run twice.
          Thread.current[@key] = nil
          raise ConnectionError, "tasker serve at #{@uri}: #{e.class}: #{e.message}" if retried
          unless repeatable || e.is_a?(Errno::EPIPE)
            raise ConnectionLostError.new(
              "tasker serve at #{@uri}: the connection dropped during #{method} (#{e.class}: #{e.message}); " \
              "not sent again: #{method} is not safe to repeat and the server may have carried it out " \
              "(steps a lost claim took return to the pool when their lease expires). Call again.",
              rpc_method: method
            )
          end

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
