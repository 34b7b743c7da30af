# frozen_string_literal: true

module TaskerCore
  module Rails
    # Runs each step handler call the way Rails runs framework-invoked code
    # on a thread of its own (TaskerCore::StepHandlers.around_handler): the
    # handlers of a task run on Ruby threads that the gem starts, so without
    # this an ActiveRecord connection checked out by a handler stays with its
    # thread until the thread ends, and a few parallel steps per job exhaust
    # the pool (ActiveRecord::ConnectionTimeoutError, then retries).
    #
    # - Classes cached (production, test): the call runs in
    #   Rails.application.executor.wrap: connections go back to the pool,
    #   the query cache and CurrentAttributes are reset, after every step.
    # - Class reloading on (development): the task's run as a whole is
    #   wrapped in Rails.application.reloader.wrap (TaskerCore::Rails.handle;
    #   Sidekiq does it for its jobs anyway), so code changes are picked up
    #   between task runs. A handler thread must then not take the
    #   executor's load interlock of its own: its parent thread holds it while
    #   it waits for the handler, and a reload requested meanwhile would
    #   deadlock both. So in development each call only gives its
    #   connections back and resets CurrentAttributes afterwards.
    #
    # Each call is instrumented as "process_step.tasker_core" (with the
    # step's :traceparent when it has one).
    class HandlerWrapper
      def initialize(app)
        @app = app
      end

      def call(task, step, &block)
        payload = { task_id: task&.task_id, step_id: step.step_id, step_name: step.name,
                    handler_class: step.handler_class, attempt: step.attempt }
        tp = step.respond_to?(:traceparent) ? step.traceparent : nil
        payload[:traceparent] = tp if tp
        ActiveSupport::Notifications.instrument("process_step.tasker_core", payload) do
          out = run(&block)
          payload[:success] = out.is_a?(Hash) ? out["success"] : true
          out
        end
      end

      # Whether the app reloads code (config.cache_classes false).
      def reloading?
        !@app.config.cache_classes
      end

      private

      def run(&block)
        return @app.executor.wrap(&block) unless reloading?

        begin
          yield
        ensure
          ::ActiveRecord::Base.clear_active_connections! if defined?(::ActiveRecord::Base)
          ::ActiveSupport::CurrentAttributes.reset_all if defined?(::ActiveSupport::CurrentAttributes)
        end
      end
    end
  end
end
