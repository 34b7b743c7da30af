# frozen_string_literal: true

module TaskerCore
  module Rails
    # `config.tasker` in the application (config/initializers/tasker.rb): a
    # thin layer over the gem's one configuration, TaskerCore::Configuration.
    #
    # - Every setting of TaskerCore::Configuration (database_url,
    #   templates_dir, transport, server_url, api_token, library_path,
    #   max_parallel_steps, call_timeout, auto_migrate, backoff,
    #   step_lease_ms, environment, log_level, logger, shutdown_grace, owner,
    #   and any added later) is read and written straight through to
    #   TaskerCore.config: one set of defaults, one error type
    #   (TaskerCore::ConfigurationError).
    # - The settings below are the Rails integration's own (jobs, the enqueue
    #   subscriber, the re-publisher, instrumentation).
    #
    # In Rails, a relative templates_dir is relative to Rails.root, a nil
    # environment means Rails.env, and a nil logger means Rails.logger
    # (tagged "tasker"). Reading or writing settings loads nothing native.
    class Configuration
      # Name of the ActiveJob class that runs handle(task_id). Defaults to
      # "TaskerCore::Rails::TaskRunnerJob".
      attr_accessor :job_class
      # ActiveJob queue of the runner job. Defaults to "default".
      attr_accessor :queue_name
      # Subscribe the enqueue subscriber (task.enqueue / task.reenqueue ->
      # job) at boot. Defaults to true.
      attr_accessor :enqueue_subscriber
      # Core subscription group of the enqueue subscriber (see
      # EventPublisher.subscribe): the processes of a group share the
      # task.enqueue / task.reenqueue events, each event going to one of them,
      # so N processes subscribed to one `tasker serve` push one job per event,
      # not N. :auto (default): "rails-enqueue" with the socket transport, nil
      # (no group) with the embedded one, whose events are the process's own.
      # nil: every process receives every event. Processes that share a
      # server but not an application should use distinct names.
      attr_accessor :event_group
      # When to run the re-publisher sweep in this process: :sidekiq (in
      # Sidekiq server processes only), :delayed_job (in DelayedJob workers,
      # `bin/rails jobs:work`), true (always, in a thread), false (never; run
      # `rake tasker:republish` from cron instead). Defaults to :sidekiq.
      attr_accessor :republisher
      # Seconds between two sweeps. Defaults to 15.
      attr_accessor :republish_interval
      # A queue record is re-published only when it has been due for this
      # many seconds without being handled, so that the job its event pushed
      # has a chance to run first. Defaults to 30.
      attr_accessor :republish_grace
      # Lease a sweep takes on a record it re-publishes; the record is
      # re-published again only after the lease expired. Defaults to 300.
      attr_accessor :republish_lease
      # Records claimed per sweep. Defaults to 100.
      attr_accessor :republish_batch
      # Called with (task_id, result_hash) after each TaskRunnerJob run;
      # for instrumentation. Defaults to nil.
      attr_accessor :on_task_handled
      # Run each step handler call inside the Rails executor, so that
      # ActiveRecord connections go back to the pool after every step
      # (HandlerWrapper). Defaults to true.
      attr_accessor :wrap_handlers
      # Re-instrument the core's task and step events with
      # ActiveSupport::Notifications ("task.completed.tasker_core", ...; see
      # Notifications). :auto (default): on; with the socket transport the
      # processes of the app share the events in the core subscription group
      # "rails-notifications" (each event instrumented once, by one process).
      # true: every event in this process (no group); a String: that group;
      # false: off.
      attr_accessor :instrument_events
      # Insert TaskerCore::Rails::TraceContextMiddleware into the app's
      # middleware stack: a request's W3C traceparent header becomes the
      # trace context of the tasks it creates. Defaults to true.
      attr_accessor :trace_context_middleware

      DEFAULT_SOCKET_EVENT_GROUP = "rails-enqueue"
      DEFAULT_SOCKET_NOTIFICATIONS_GROUP = "rails-notifications"

      # The gem's configuration that the core settings go to.
      attr_reader :core

      # core: the TaskerCore::Configuration behind this layer (the process's
      # TaskerCore.config; tests pass a fresh one).
      def initialize(core: TaskerCore.config)
        @core = core
        @job_class = "TaskerCore::Rails::TaskRunnerJob"
        @queue_name = "default"
        @enqueue_subscriber = true
        @event_group = :auto
        @republisher = :sidekiq
        @republish_interval = 15
        @republish_grace = 30
        @republish_lease = 300
        @republish_batch = 100
        @on_task_handled = nil
        @wrap_handlers = true
        @instrument_events = :auto
        @trace_context_middleware = true
      end

      # The settings of TaskerCore::Configuration, read and written through.
      def method_missing(name, *args, &block)
        return @core.public_send(name, *args, &block) if core_setting?(name)

        super
      end

      def respond_to_missing?(name, include_private = false)
        core_setting?(name) || super
      end

      # The enqueue subscriber's group after resolving :auto.
      def enqueue_event_group
        return event_group&.to_s unless event_group == :auto

        socket? ? DEFAULT_SOCKET_EVENT_GROUP : nil
      end

      # [on?, group] of the notifications relay after resolving :auto.
      def notifications_subscription
        case instrument_events
        when :auto then [true, socket? ? DEFAULT_SOCKET_NOTIFICATIONS_GROUP : nil]
        when true then [true, nil]
        when String then [true, instrument_events]
        else [false, nil]
        end
      end

      # The job class, resolved (autoloaded) when first needed.
      def job
        job_class.is_a?(String) ? job_class.constantize : job_class
      end

      # templates_dir as an absolute path: a relative one is taken relative
      # to root (Rails.root).
      def templates_dir_under(root)
        dir = templates_dir.to_s
        return dir if dir.empty? || root.nil?

        File.expand_path(dir, root.to_s)
      end

      # Raises TaskerCore::ConfigurationError naming the field when a value
      # is out of range (the core's own setters check theirs on assignment).
      def validate!
        unless TaskerCore::Configuration::TRANSPORTS.include?(transport&.to_sym)
          invalid!("transport must be :embedded or :socket (got #{transport.inspect})")
        end
        if max_parallel_steps && !(max_parallel_steps.is_a?(Integer) && max_parallel_steps.positive?)
          invalid!("max_parallel_steps must be nil (the template's) or a positive integer (got #{max_parallel_steps.inspect})")
        end
        { republish_interval: republish_interval, republish_lease: republish_lease, republish_batch: republish_batch,
          call_timeout: call_timeout, shutdown_grace: shutdown_grace }.each do |name, v|
          invalid!("#{name} must be a positive number (got #{v.inspect})") unless v.is_a?(Numeric) && v.positive?
        end
        unless republish_grace.is_a?(Numeric) && republish_grace >= 0
          invalid!("republish_grace must be zero or more seconds (got #{republish_grace.inspect})")
        end
        if step_lease_ms && !(step_lease_ms.is_a?(Numeric) && step_lease_ms.positive?)
          invalid!("step_lease_ms must be nil (the core's 30 s) or a positive number (got #{step_lease_ms.inspect})")
        end
        invalid!("backoff must be nil or a Hash like { base_ms: 1000, max_ms: 300_000 } (got #{backoff.inspect})") unless backoff.nil? || backoff.is_a?(Hash)
        unless event_group.nil? || event_group == :auto || (event_group.is_a?(String) && !event_group.strip.empty?)
          invalid!("event_group must be :auto, nil or a non-empty String (got #{event_group.inspect})")
        end
        unless [true, false, :auto].include?(instrument_events) || (instrument_events.is_a?(String) && !instrument_events.strip.empty?)
          invalid!("instrument_events must be :auto, true, false or a group name (got #{instrument_events.inspect})")
        end
        unless [true, false, :sidekiq, :delayed_job].include?(republisher)
          invalid!("republisher must be :sidekiq, :delayed_job, true or false (got #{republisher.inspect})")
        end
        self
      end

      private

      def socket?
        transport&.to_sym == :socket
      end

      def core_setting?(name)
        name = name.to_s
        return false if name.end_with?("?", "!")

        @core.respond_to?(name) && TaskerCore::Configuration.public_method_defined?(name)
      end

      def invalid!(message)
        raise TaskerCore::ConfigurationError, "config.tasker.#{message}"
      end
    end
  end
end
