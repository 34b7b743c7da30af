# frozen_string_literal: true

require "json"
require "net/http"
require "time"
require "uri"

module TaskerCore
  # A step handler that calls an HTTP API with Net::HTTP. handler_config:
  # url (required), method (default GET), headers, timeout_seconds (default
  # 30), body (JSON-encoded). Override #request_body / #request_headers /
  # #process_response to shape the call.
  #
  # Responses: 2xx -> the parsed JSON body (or {"body" => text}); 429 and
  # 503 -> RetryableError with the Retry-After delay (seconds or HTTP date);
  # 400, 401, 403, 404, 422 -> PermanentError; other 4xx/5xx -> RetryableError.
  #
  # The request carries the step's W3C trace context as its traceparent
  # header (TaskerCore::TraceContext.current, the step's traceparent while
  # the handler runs) unless #request_headers sets one, as tasker:http does.
  class ApiStepHandler < BaseStepHandler
    PERMANENT_STATUSES = [400, 401, 403, 404, 422].freeze
    THROTTLE_STATUSES = [429, 503].freeze

    def process(task, _sequence, step)
      uri = URI.parse(request_url(task, step))
      req = build_request(uri, task, step)
      res = Net::HTTP.start(uri.host, uri.port, use_ssl: uri.scheme == "https",
                                                open_timeout: timeout, read_timeout: timeout) do |http|
        http.request(req)
      end
      handle_response(res)
    end

    # The URL to call (handler_config "url" by default).
    def request_url(_task, _step)
      url = config["url"].to_s
      raise PermanentError, "#{self.class}: handler_config url is required" if url.empty?

      url
    end

    # The request body (handler_config "body" by default, else the step inputs for POST/PUT/PATCH).
    def request_body(_task, step)
      config.key?("body") ? config["body"] : step.inputs
    end

    def request_headers(_task, _step)
      (config["headers"] || {}).to_h
    end

    # Turns a 2xx response into the step's results.
    def process_response(response)
      body = response.body.to_s
      return {} if body.empty?

      JSON.parse(body)
    rescue JSON::ParserError
      { "body" => body }
    end

    # Parses a Retry-After value (delta seconds or HTTP date) into seconds.
    def self.retry_after_seconds(value, now: Time.now)
      return nil if value.nil? || value.to_s.strip.empty?

      v = value.to_s.strip
      return Integer(v, 10).to_f if v.match?(/\A\d+\z/)

      [Time.httpdate(v) - now, 0].max.to_f
    rescue ArgumentError
      nil
    end

    private

    def timeout
      (config["timeout_seconds"] || 30).to_f
    end

    def build_request(uri, task, step)
      method = (config["method"] || "GET").to_s.upcase
      klass = Net::HTTP.const_get(method.capitalize)
      req = klass.new(uri)
      request_headers(task, step).each { |k, v| req[k.to_s] = v.to_s }
      tp = TraceContext.current
      req[TraceContext::HEADER] = tp if tp && req[TraceContext::HEADER].nil?
      if req.request_body_permitted?
        body = request_body(task, step)
        req["Content-Type"] ||= "application/json"
        req.body = body.is_a?(String) ? body : JSON.generate(body)
      end
      req
    rescue NameError
      raise PermanentError, "#{self.class}: unsupported HTTP method #{method}"
    end

    def handle_response(res)
      status = res.code.to_i
      return process_response(res) if (200..299).cover?(status)

      msg = "HTTP #{status} from #{res.uri || 'server'}"
      if THROTTLE_STATUSES.include?(status)
        raise RetryableError.new(msg, retry_after: self.class.retry_after_seconds(res["Retry-After"]))
      end
      raise PermanentError, msg if PERMANENT_STATUSES.include?(status)

      raise RetryableError, msg
    end
  end
end
