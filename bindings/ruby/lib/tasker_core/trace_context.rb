# frozen_string_literal: true

module TaskerCore
  # The W3C trace context (a `traceparent` value,
  # "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>") that the gem
  # hands to the core when it creates a task, and that a step handler runs
  # under (docs/observability.md, "Trace context in and out").
  #
  # The core keeps a task's trace context as the tag
  # "traceparent:<value>"; TaskerCore.create_task and
  # Client#initialize_task add that tag when there is a current trace
  # context and the request carries no such tag. The core hands each claimed
  # step a `traceparent` (TaskerCore::Step#traceparent), and the gem runs
  # the step's handler with it as the current trace context.
  #
  # The current trace context is, in order:
  #
  # 1. with the opentelemetry-api gem loaded, the span context of
  #    OpenTelemetry's current context, as its W3C TraceContext propagator
  #    writes it (the span of an instrumented Rails request, a Sidekiq job,
  #    or your own `tracer.in_span`);
  # 2. otherwise the gem's own fiber-local value: set from the request's
  #    `traceparent` header by TaskerCore::Rails::TraceContextMiddleware
  #    (inserted by the railtie), by TraceContext.with around a block (jobs,
  #    scripts), and by the gem around each step handler call.
  module TraceContext
    # The task tag prefix the core reads (tracectx.TagPrefix in Go).
    TAG_PREFIX = "traceparent:"
    # The W3C header name (HTTP) and carrier key.
    HEADER = "traceparent"

    KEY = :__tasker_core_traceparent
    private_constant :KEY

    HEX = /\A[0-9a-f]+\z/.freeze
    private_constant :HEX

    class << self
      # The current trace context as a traceparent String, or nil (see the
      # module's comment for where it comes from).
      def current
        otel = otel_current
        return otel if otel

        Thread.current[KEY]
      end

      # Runs the block with traceparent as the current trace context (the
      # gem's fiber-local value; with OpenTelemetry loaded, also
      # OpenTelemetry's current context, so spans started inside are its
      # children and instrumented HTTP clients send it). An invalid or nil
      # traceparent runs the block with no trace context of the gem's (W3C:
      # an invalid value is ignored). Returns the block's value; the
      # previous value is restored afterwards, also on an exception.
      #
      #   TaskerCore::TraceContext.with(job_traceparent) { TaskerCore.create_task("shop/order", ctx) }
      def with(traceparent)
        value = parse(traceparent)
        previous = Thread.current[KEY]
        Thread.current[KEY] = value
        begin
          value && otel? ? otel_with(value) { yield } : yield
        ensure
          Thread.current[KEY] = previous
        end
      end

      # The gem's own fiber-local value, without OpenTelemetry (nil when none).
      def local
        Thread.current[KEY]
      end

      # traceparent in its normal form when it is a valid W3C traceparent,
      # else nil. Strict: two lowercase hex digits of version (not "ff"),
      # 32 of trace id and 16 of parent id (neither all zeros) and 2 of
      # flags, separated by "-". Version 00 has exactly these four fields; a
      # later version may add fields after a "-", which are dropped (the
      # value is then written as version 00, the one the core reads).
      # Surrounding blanks are ignored.
      def parse(traceparent)
        return nil unless traceparent.is_a?(String)

        s = traceparent.strip
        return nil if s.length < 55 || s[2] != "-" || s[35] != "-" || s[52] != "-"

        version = s[0, 2]
        trace_id = s[3, 32]
        parent_id = s[36, 16]
        flags = s[53, 2]
        return nil unless [version, trace_id, parent_id, flags].all? { |part| HEX.match?(part) }
        return nil if version == "ff" || trace_id.delete("0").empty? || parent_id.delete("0").empty?

        if version == "00"
          return nil unless s.length == 55
        elsif s.length > 55 && s[55] != "-"
          return nil
        end
        "00-#{trace_id}-#{parent_id}-#{flags}"
      end

      # Whether traceparent is a valid W3C traceparent (see parse).
      def valid?(traceparent)
        !parse(traceparent).nil?
      end

      # The traceparent stored in a task's tags, or nil.
      def from_tags(tags)
        tag = Array(tags).find { |t| t.is_a?(String) && t.start_with?(TAG_PREFIX) }
        tag && tag[TAG_PREFIX.length..]
      end

      # A task request (a TaskRequest or a Hash with String or Symbol keys)
      # as the Hash to send, with the tag "traceparent:<current>" added when
      # there is a current trace context and its tags carry none. Returns
      # the request unchanged otherwise (also when config's
      # propagate_trace_context is false); never modifies the caller's
      # object.
      def tag_request(request, config = TaskerCore.config)
        return request unless config.propagate_trace_context

        h = request.respond_to?(:to_h) ? request.to_h : request
        return request unless h.is_a?(Hash)

        key = h.key?(:tags) && !h.key?("tags") ? :tags : "tags"
        tags = Array(h[key])
        return h if tags.any? { |t| t.to_s.start_with?(TAG_PREFIX) }

        tp = current
        return h unless tp

        h.merge(key => tags + ["#{TAG_PREFIX}#{tp}"])
      end

      # Sets the gem's fiber-local value (nil or an invalid value clears
      # it) and returns the previous one, for a caller that restores it
      # itself (TaskerCore::Rails::TraceContextMiddleware). Prefer with.
      def swap(traceparent)
        previous = Thread.current[KEY]
        Thread.current[KEY] = parse(traceparent)
        previous
      end

      # Restores a value swap returned.
      def restore(previous)
        Thread.current[KEY] = previous
      end

      # Whether the opentelemetry-api gem is loaded (its W3C propagator and
      # context are what the gem uses).
      def otel?
        defined?(::OpenTelemetry::Context) && defined?(::OpenTelemetry::Trace::Propagation::TraceContext) ? true : false
      end

      private

      def otel_propagator
        ::OpenTelemetry::Trace::Propagation::TraceContext.text_map_propagator
      end

      # OpenTelemetry's current span context as a traceparent, or nil (no
      # valid span; OpenTelemetry not loaded; any error of it: tracing never
      # breaks task creation).
      def otel_current
        return nil unless otel?

        carrier = {}
        otel_propagator.inject(carrier)
        parse(carrier[HEADER])
      rescue StandardError
        nil
      end

      def otel_with(value, &block)
        ctx = begin
          otel_propagator.extract({ HEADER => value })
        rescue StandardError
          nil
        end
        return yield unless ctx

        ::OpenTelemetry::Context.with_current(ctx, &block)
      end
    end
  end
end
