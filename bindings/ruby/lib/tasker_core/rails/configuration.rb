# frozen_string_literal: true

module TaskerCore
  module Rails
    # Settings of the Rails integration, reachable as `config.tasker` in the
    # application and in config/initializers/tasker.rb. Every field has a
    # default; nil means "the core's default". Reading or writing them loads
    # nothing native.
    class Configuration
      # Database of the core (not necessarily the app's own): "postgres://..."
      # or "sqlite:PATH". Defaults to $TASKER_DATABASE_URL.
      attr_accessor :database_url
      # Directory of the task templates (*.yml / *.yaml, recursive).
      # Defaults to Rails.root/config/tasker/tasks.
      attr_accessor :templates_dir
      # :embedded (libtasker in this process, loaded on first use) or :socket
      # (HTTP to `tasker serve`, no native code). Defaults to
      # $TASKER_TRANSPORT or :embedded.
      attr_accessor :transport
      # Path of libtasker.so for the embedded transport. Defaults to
      # $TASKER_LIBRARY_PATH, then the gem's own search path.
      attr_accessor :library_path
      # environments.<name> overrides of the templates. Defaults to
      # $TASKER_ENV, else Rails.env.
      attr_accessor :environment
      # URL of `tasker serve` for the socket transport. Defaults to $TASKER_URL.
      attr_accessor :server_url
      # Bearer token for `tasker serve`. Defaults to $TASKER_API_TOKEN.
      attr_accessor :api_token
      # How many Ruby step handlers of one task run at once (Ruby threads).
      # nil: the template's max_parallel_steps.
      attr_accessor :max_parallel_steps
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
      # Sidekiq server processes only), true (always, in a thread), false
      # (never; run `rake tasker:republish` from cron instead). Defaults to
      # :sidekiq.
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

      def initialize
        @database_url = ENV["TASKER_DATABASE_URL"]
        @templates_dir = nil
        @transport = (ENV["TASKER_TRANSPORT"] || "embedded").to_sym
        @server_url = ENV["TASKER_URL"]
        @library_path = ENV["TASKER_LIBRARY_PATH"]
        @environment = ENV["TASKER_ENV"]
        @api_token = ENV["TASKER_API_TOKEN"]
        @max_parallel_steps = nil
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
      end

      DEFAULT_SOCKET_EVENT_GROUP = "rails-enqueue"

      # The enqueue subscriber's group after resolving :auto.
      def enqueue_event_group
        return event_group&.to_s unless event_group == :auto

        transport&.to_sym == :socket ? DEFAULT_SOCKET_EVENT_GROUP : nil
      end

      # The job class, resolved (autoloaded) when first needed.
      def job
        job_class.is_a?(String) ? job_class.constantize : job_class
      end

      # Raises ArgumentError naming the field when a value is out of range.
      def validate!
        unless %i[embedded socket].include?(transport&.to_sym)
          raise ArgumentError, "config.tasker.transport must be :embedded or :socket (got #{transport.inspect})"
        end
        if transport.to_sym == :socket && (server_url.nil? || server_url.empty?)
          raise ArgumentError, "config.tasker.server_url (or $TASKER_URL) is required with transport :socket"
        end
        if max_parallel_steps && !(max_parallel_steps.is_a?(Integer) && max_parallel_steps.positive?)
          raise ArgumentError, "config.tasker.max_parallel_steps must be a positive integer (got #{max_parallel_steps.inspect})"
        end
        { republish_interval: republish_interval, republish_lease: republish_lease, republish_batch: republish_batch }.each do |name, v|
          raise ArgumentError, "config.tasker.#{name} must be a positive number (got #{v.inspect})" unless v.is_a?(Numeric) && v.positive?
        end
        unless republish_grace.is_a?(Numeric) && republish_grace >= 0
          raise ArgumentError, "config.tasker.republish_grace must be zero or more seconds (got #{republish_grace.inspect})"
        end
        unless event_group.nil? || event_group == :auto || (event_group.is_a?(String) && !event_group.strip.empty?)
          raise ArgumentError, "config.tasker.event_group must be :auto, nil or a non-empty String (got #{event_group.inspect})"
        end
        unless [true, false, :sidekiq].include?(republisher)
          raise ArgumentError, "config.tasker.republisher must be :sidekiq, true or false (got #{republisher.inspect})"
        end
        self
      end
    end
  end
end
