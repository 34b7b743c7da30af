# frozen_string_literal: true

require "tasker_core/trace_context"

module TaskerCore
  module Rails
    # For ActiveJob classes of your own that create tasks in a job rather
    # than in the request: the job carries the trace context current when
    # it was enqueued (TaskerCore::TraceContext.current, e.g. the request's
    # traceparent) in its serialized payload, and performs inside
    # TraceContext.with(it), so the tasks it creates join the request's
    # trace.
    #
    #   class ApplicationJob < ActiveJob::Base
    #     include TaskerCore::Rails::TraceContextJob
    #   end
    #
    # TaskerCore::Rails::TaskRunnerJob needs none of this: the trace context
    # is stored with the task when it is created, and the core hands it to
    # every step.
    module TraceContextJob
      PAYLOAD_KEY = "tasker_traceparent"

      def self.included(base)
        base.before_enqueue { |job| job.tasker_traceparent ||= TaskerCore::TraceContext.current }
        base.around_perform do |job, block|
          tp = job.tasker_traceparent
          tp ? TaskerCore::TraceContext.with(tp) { block.call } : block.call
        end
      end

      # The traceparent the job carries (nil when it was enqueued without one).
      attr_reader :tasker_traceparent

      def tasker_traceparent=(value)
        @tasker_traceparent = TaskerCore::TraceContext.parse(value)
      end

      def serialize
        data = super
        data[PAYLOAD_KEY] = tasker_traceparent if tasker_traceparent
        data
      end

      def deserialize(job_data)
        super
        self.tasker_traceparent = job_data[PAYLOAD_KEY]
      end
    end
  end
end
