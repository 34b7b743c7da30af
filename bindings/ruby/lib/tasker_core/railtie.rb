# frozen_string_literal: true

require "rails/railtie"
require "tasker_core/rails/integration"

module TaskerCore
  # Plugs tasker_core into a Rails application:
  #
  # - config.tasker (TaskerCore::Rails::Configuration), set in
  #   config/initializers/tasker.rb, is handed to TaskerCore.configure after
  #   the initializers ran. Boot touches nothing native: the embedded
  #   transport loads libtasker on first use, so a preloading, forking server
  #   (Puma, Spring) boots safely.
  # - after boot, the enqueue subscriber maps task.enqueue / task.reenqueue to
  #   TaskRunnerJob (ActiveJob);
  # - in Sidekiq server processes the re-publisher sweeps the core's durable
  #   queue for records whose job never arrived;
  # - in Sidekiq server processes, Sidekiq's :shutdown event calls
  #   TaskerCore.shutdown!: running jobs hand their tasks back (finished
  #   steps reported, unfinished ones released without counting the attempt,
  #   the task re-enqueued due now) before Sidekiq's timeout;
  # - `rake tasker:republish` runs one sweep (for cron);
  # - generators: tasker:install, tasker:task.
  class Railtie < ::Rails::Railtie
    config.tasker = TaskerCore::Rails::Configuration.new

    initializer "tasker_core.templates_dir", before: :load_config_initializers do |app|
      app.config.tasker.templates_dir ||= app.root.join("config", "tasker", "tasks").to_s
      app.config.tasker.environment ||= ::Rails.env.to_s
    end

    initializer "tasker_core.configure", after: :load_config_initializers do |app|
      TaskerCore::Rails.apply(app.config.tasker)
    end

    config.after_initialize do |app|
      tasker = app.config.tasker
      TaskerCore::Rails::EnqueueSubscriber.install if tasker.enqueue_subscriber
      case tasker.republisher
      when true
        TaskerCore::Rails.republisher.start
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
