# frozen_string_literal: true

require "logger"

module TaskerCore
  # Rails integration: configuration glue, the runner job, the enqueue
  # subscriber and the re-publisher. Loaded by TaskerCore::Railtie; nothing
  # here loads libtasker (the embedded transport does that on first use).
  #
  # Inside this namespace `Rails` means TaskerCore::Rails; the framework is
  # always spelled ::Rails.
  module Rails
    # Raised for misconfiguration of the integration.
    class Error < StandardError; end

    autoload :Configuration, "tasker_core/rails/configuration"
    autoload :HandlerWrapper, "tasker_core/rails/handler_wrapper"
    autoload :EnqueueSubscriber, "tasker_core/rails/enqueue_subscriber"
    autoload :QueueStore, "tasker_core/rails/queue_store"
    autoload :Republisher, "tasker_core/rails/republisher"
    autoload :TaskRunnerJob, "tasker_core/rails/task_runner_job"

    class << self
      # The integration's settings (the application's config.tasker).
      def config
        @config ||= Configuration.new
      end

      attr_writer :config

      # Hands the settings to TaskerCore.configure. Plain values only: the
      # core is opened lazily by the first call that needs it.
      def apply(config)
        config.validate!
        self.config = config
        TaskerCore.configure do |c|
          c.database_url = config.database_url if config.database_url
          c.templates_dir = config.templates_dir.to_s if config.templates_dir
          c.transport = config.transport.to_sym
          c.server_url = config.server_url if config.server_url
          c.api_token = config.api_token if config.api_token
          c.library_path = config.library_path if config.library_path
          c.environment = config.environment.to_s if config.environment
          c.max_parallel_steps = config.max_parallel_steps if config.max_parallel_steps
          # Tasks are run by ActiveJob, not by Go runners: the core publishes
          # task.enqueue / task.reenqueue for the subscriber.
          c.event_enqueue = true
          c.logger = ::Rails.logger if ::Rails.respond_to?(:logger) && ::Rails.logger
        end
        install_handler_wrapper(config)
        config
      end

      # Step handlers run inside the Rails executor (HandlerWrapper), unless
      # config.wrap_handlers is false.
      def install_handler_wrapper(config)
        app = ::Rails.respond_to?(:application) ? ::Rails.application : nil
        TaskerCore::StepHandlers.around_handler = (HandlerWrapper.new(app) if app && config.wrap_handlers)
      end

      # Runs handle(task_id) with the task's handler class (the template's
      # task_handler_class, else TaskerCore::BaseTaskHandler) and returns the
      # orchestration result hash.
      #
      # The run is wrapped in the Rails reloader (a no-op inside Sidekiq,
      # which wraps its jobs already): in development, code changes are
      # picked up between task runs; the step handlers themselves run in
      # the executor (HandlerWrapper).
      def handle(task_id)
        app = ::Rails.respond_to?(:application) ? ::Rails.application : nil
        return handler_for_task(task_id).handle(task_id) unless app && config.wrap_handlers

        app.reloader.wrap { handler_for_task(task_id).handle(task_id) }
      end

      def handler_for_task(task_id)
        TaskerCore::TaskHandlerRegistry.new.find_handler_for_task(task_id)
      end

      # On Sidekiq's :shutdown event (TERM; Sidekiq then waits its -t timeout
      # for running jobs), ask every running handle to hand its task back
      # (TaskerCore.shutdown!). The grace for in-flight step handlers is
      # lowered to fit in Sidekiq's timeout, less 3 s for the reports.
      def install_sidekiq_shutdown
        timeout = ::Sidekiq.respond_to?(:options) ? ::Sidekiq.options[:timeout] : nil
        if timeout
          fit = [timeout.to_f - 3, 0.5].max
          TaskerCore.config.shutdown_grace = [TaskerCore.config.shutdown_grace.to_f, fit].min
        end
        ::Sidekiq.configure_server do |sidekiq|
          sidekiq.on(:shutdown) { TaskerCore.shutdown! }
        end
      end

      # [name, data] of an event, whatever its shape (object or hash).
      def event_parts(event)
        if event.respond_to?(:name) && event.respond_to?(:data)
          [event.name.to_s, stringify(event.data)]
        else
          h = stringify(event)
          [(h["name"] || h["event"] || h["kind"]).to_s, stringify(h["data"] || h)]
        end
      end

      def not_found?(error)
        error.is_a?(TaskerCore::NotFoundError)
      end

      def queue_store
        @queue_store ||= QueueStore.new
      end

      attr_writer :queue_store

      # Rails.logger when there is one, else warnings to stderr.
      def logger
        return ::Rails.logger if ::Rails.respond_to?(:logger) && ::Rails.logger

        @logger ||= Logger.new($stderr, level: Logger::WARN)
      end

      attr_writer :logger

      # The process's re-publisher (created on first use).
      def republisher
        @republisher ||= Republisher.new(config: config)
      end

      private

      def stringify(h)
        h.respond_to?(:to_h) ? h.to_h.transform_keys(&:to_s) : {}
      end
    end
  end
end
