# frozen_string_literal: true

require_relative "boot"

require "rails"
require "active_record/railtie"
require "active_job/railtie"
require "action_controller/railtie"
require "sidekiq"
# $ACTIVE_JOB_ADAPTER=delayed_job runs the jobs on DelayedJob (its
# ActiveRecord backend, in the app's database) instead of Sidekiq.
JOB_ADAPTER = ENV.fetch("ACTIVE_JOB_ADAPTER", "sidekiq").to_sym
require "delayed_job_active_record" if JOB_ADAPTER == :delayed_job
require "tasker_core"

module RailsApp
  # A minimal Rails application for the tasker_core end-to-end test: ActiveJob
  # on Sidekiq (or DelayedJob), ActiveRecord on PostgreSQL, task templates under config/tasker/tasks, Ruby step handlers
  # under app/tasks.
  class Application < Rails::Application
    config.load_defaults 6.1
    config.root = File.expand_path("..", __dir__)
    config.eager_load = false
    config.secret_key_base = ENV.fetch("SECRET_KEY_BASE", "rails-app-test-only")
    config.active_job.queue_adapter = JOB_ADAPTER
    config.logger = ActiveSupport::Logger.new(ENV.fetch("RAILS_LOG", File.join(config.root, "log", "#{Rails.env}.log")))
    config.log_level = :info
    config.hosts.clear
  end
end
