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
    # Base of the integration's own errors (a TaskerCore::Error, so one
    # `rescue TaskerCore::Error` covers the gem and the integration).
    # Misconfiguration raises TaskerCore::ConfigurationError.
    class Error < TaskerCore::Error; end

    autoload :Configuration, "tasker_core/rails/configuration"
    autoload :HandlerWrapper, "tasker_core/rails/handler_wrapper"
    autoload :Notifications, "tasker_core/rails/notifications"
    autoload :TaggedLogger, "tasker_core/rails/tagged_logger"
    autoload :EnqueueSubscriber, "tasker_core/rails/enqueue_subscriber"
    autoload :LazySubscription, "tasker_core/rails/lazy_subscription"
    autoload :QueueStore, "tasker_core/rails/queue_store"
    autoload :Republisher, "tasker_core/rails/republisher"
    autoload :TaskRunnerJob, "tasker_core/rails/task_runner_job"
    autoload :Tasks, "tasker_core/rails/tasks"
    autoload :TraceContextMiddleware, "tasker_core/rails/trace_context_middleware"
    autoload :TraceContextJob, "tasker_core/rails/trace_context_job"
    autoload :DashboardProxy, "tasker_core/rails/dashboard_proxy"

    class << self
      # The integration's settings (the application's config.tasker).
      def config
        @config ||= Configuration.new
      end

      attr_writer :config

      # Checks the settings and applies the Rails conventions to the gem's
      # configuration (config.tasker writes through to it): a relative
      # templates_dir is relative to Rails.root, no environment means
      # Rails.env, no logger means Rails.logger tagged "tasker" (and, with
      # the embedded transport, the core's own log goes there too, tagged
      # "[tasker] [core]": core_logs :logger, CoreLogs); then
      # TaskerCore.configure (a client opened before is closed). Plain values
      # only: the core is opened lazily by the first call that needs it.
      def apply(config)
        config.validate!
        self.config = config
        root = app_root
        TaskerCore.configure do |c|
          copy_core_settings(config.core, c) unless config.core.equal?(c)
          c.templates_dir = config.templates_dir_under(root) if root
          c.environment ||= ENV["TASKER_ENV"] || (::Rails.env.to_s if defined?(::Rails.env) && ::Rails.env)
          # Tasks are run by ActiveJob, not by Go runners: the core publishes
          # task.enqueue / task.reenqueue for the subscriber.
          c.event_enqueue = true
          c.logger ||= TaggedLogger.new(::Rails.logger) if rails_logger
        end
        install_handler_wrapper(config)
        config
      end

      # Settings of one TaskerCore::Configuration copied onto another (a
      # config.tasker built over a configuration of its own, in tests).
      def copy_core_settings(from, to)
        TaskerCore::Configuration.public_instance_methods(false).grep(/\A[a-z_]+=\z/).each do |writer|
          reader = writer.to_s.chomp("=").to_sym
          next unless from.respond_to?(reader)

          value = reader == :owner ? from.instance_variable_get(:@owner) : from.public_send(reader)
          to.public_send(writer, value) unless value.nil? && reader == :owner
        end
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

      # Runs the block inside the Rails executor when there is an
      # application (threads of the integration: event poller, re-publisher).
      def with_executor(&block)
        app = ::Rails.respond_to?(:application) ? ::Rails.application : nil
        app ? app.executor.wrap(&block) : yield
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

      # For a preforking server's "before fork" hook (Puma's before_fork,
      # Unicorn's before_fork): when the embedded core (libtasker, a Go
      # runtime) is already loaded in this process, forking would hand every
      # worker a Go runtime that does not survive fork(), so stop the server
      # instead. Exits with SystemExit (abort): Puma 5 only logs a warning
      # for an exception raised in before_fork and forks anyway, but lets
      # SystemExit through. Returns true when forking is safe.
      #
      #   # config/puma.rb
      #   preload_app!
      #   before_fork { TaskerCore::Rails.before_fork! }
      def before_fork!
        return true unless TaskerCore.native_loaded?

        msg = "tasker_core: libtasker (the embedded Go core) was loaded in process #{Process.pid} before the server " \
              "forked its workers; the workers could not use it (TaskerCore::ForkError). Make no core call while " \
              "the app boots (initializers, preload), or use config.tasker.transport = :socket in the web server."
        logger.error(msg)
        abort(msg)
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

      # Rails.logger tagged "tasker" when there is one, else warnings to
      # stderr.
      def logger
        return @logger if @logger

        l = rails_logger
        return TaggedLogger.new(l) if l

        @fallback_logger ||= Logger.new($stderr, level: Logger::WARN)
      end

      attr_writer :logger

      def rails_logger
        ::Rails.logger if defined?(::Rails) && ::Rails.respond_to?(:logger)
      end

      def app_root
        ::Rails.root if defined?(::Rails) && ::Rails.respond_to?(:root)
      end

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
