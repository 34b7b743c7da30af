# frozen_string_literal: true

require "rails/railtie"
require "tasker_core/rails/integration"

module TaskerCore
  # Plugs tasker_core into a Rails application:
  #
  # - config.tasker (TaskerCore::Rails::Configuration, a layer over
  #   TaskerCore.config), set in config/initializers/tasker.rb, is checked
  #   and applied after the initializers ran (templates_dir relative to
  #   Rails.root, environment Rails.env, logger Rails.logger tagged
  #   "tasker"). Boot touches nothing native: the embedded transport loads
  #   libtasker on first use, so a preloading, forking server (Puma, Spring)
  #   boots safely;
  # - step handlers run inside the Rails executor (HandlerWrapper);
  # - the core's task and step events are instrumented with
  #   ActiveSupport::Notifications ("task.completed.tasker_core", ...);
  # - after boot, the enqueue subscriber maps task.enqueue / task.reenqueue to
  #   TaskRunnerJob (ActiveJob);
  # - in Sidekiq server processes (or DelayedJob workers, with republisher
  #   :delayed_job) the re-publisher sweeps the core's durable queue for
  #   records whose job never arrived;
  # - in Sidekiq server processes, Sidekiq's :shutdown event calls
  #   TaskerCore.shutdown!: running jobs hand their tasks back (finished
  #   steps reported, unfinished ones released without counting the attempt,
  #   the task re-enqueued due now) before Sidekiq's timeout;
  # - TaskerCore::Rails::TraceContextMiddleware in the middleware stack
  #   (config.tasker.trace_context_middleware): a request's W3C traceparent
  #   header goes with the tasks it creates, as their traceparent tag;
  # - rake tasks: tasker:migrate, tasker:migrate:status, tasker:validate,
  #   tasker:explain[ID], tasker:republish (one sweep, for cron);
  # - generators: tasker_core:install, tasker_core:task (old names
  #   tasker:install, tasker:task still work).
  class Railtie < ::Rails::Railtie
    config.tasker = TaskerCore::Rails::Configuration.new

    initializer "tasker_core.configure", after: :load_config_initializers do |app|
      TaskerCore::Rails.apply(app.config.tasker)
    end

    initializer "tasker_core.trace_context_middleware", after: :load_config_initializers do |app|
      app.middleware.use(TaskerCore::Rails::TraceContextMiddleware) if app.config.tasker.trace_context_middleware
    end

    config.after_initialize do |app|
      tasker = app.config.tasker
      TaskerCore::Rails::EnqueueSubscriber.install if tasker.enqueue_subscriber
      TaskerCore::Rails::Notifications.install if tasker.notifications_subscription.first
      case tasker.republisher
      when true
        TaskerCore::Rails.republisher.start
      when :delayed_job
        if defined?(::Delayed::Worker)
          require "tasker_core/rails/delayed_job_plugin"
          plugins = ::Delayed::Worker.plugins
          plugins << TaskerCore::Rails::DelayedJobPlugin unless plugins.include?(TaskerCore::Rails::DelayedJobPlugin)
        end
      when :sidekiq
        if defined?(::Sidekiq) && ::Sidekiq.server?
          ::Sidekiq.configure_server do |sidekiq|
            sidekiq.on(:startup) { TaskerCore::Rails.republisher.start }
            sidekiq.on(:quiet) { TaskerCore::Rails.republisher.stop }
            sidekiq.on(:shutdown) { TaskerCore::Rails.republisher.stop }
          end
        end
      end
      TaskerCore::Rails.install_sidekiq_shutdown if defined?(::Sidekiq) && ::Sidekiq.server?
    end

    rake_tasks do
      load File.expand_path("rails/tasks.rake", __dir__)
    end
  end
end
