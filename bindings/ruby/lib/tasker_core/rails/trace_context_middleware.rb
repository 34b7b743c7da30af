# frozen_string_literal: true

require "tasker_core/trace_context"

module TaskerCore
  module Rails
    # Rack middleware: makes the request's W3C `traceparent` header the
    # current trace context (TaskerCore::TraceContext.current) while the
    # request is handled, so that tasks created by the request
    # (TaskerCore.create_task, Client#initialize_task) carry it as their
    # "traceparent:<value>" tag. The header is checked strictly (see
    # TraceContext.parse); an invalid one is ignored. The previous value is
    # restored when the app returns, also on an exception, so a server
    # thread never keeps one request's context for the next.
    #
    # The railtie inserts it (config.tasker.trace_context_middleware =
    # false leaves it out). In another Rack app:
    #
    #   use TaskerCore::Rails::TraceContextMiddleware
    #
    # With the opentelemetry-api gem loaded and an instrumented Rack stack,
    # TraceContext.current is OpenTelemetry's current span instead (a child
    # of the same header), which this middleware does not change.
    class TraceContextMiddleware
      ENV_KEY = "HTTP_TRACEPARENT"

      def initialize(app)
        @app = app
      end

      def call(env)
        previous = TaskerCore::TraceContext.swap(env[ENV_KEY])
        begin
          @app.call(env)
        ensure
          TaskerCore::TraceContext.restore(previous)
        end
      end
    end
  end
end
