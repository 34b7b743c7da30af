# frozen_string_literal: true

# Written by `rails generate tasker_core:install`, then pointed at the test
# environment (every value can come from the environment).
Rails.application.configure do
  config.tasker.database_url = ENV.fetch("TASKER_DATABASE_URL", nil)
  config.tasker.templates_dir = ENV.fetch("TASKER_TEMPLATES_DIR", "config/tasker/tasks") # relative to Rails.root
  config.tasker.transport = ENV.fetch("TASKER_TRANSPORT", "embedded").to_sym
  config.tasker.server_url = ENV["TASKER_URL"] if ENV["TASKER_URL"]
  config.tasker.max_parallel_steps = 4
  config.tasker.queue_name = "default"
  # TASKER_WRAP_HANDLERS=0: the negative control of the ActiveRecord test
  # (handlers outside the Rails executor keep their connections).
  config.tasker.wrap_handlers = ENV["TASKER_WRAP_HANDLERS"] != "0"

  # The test creates one task with the subscriber off, as if the process had
  # died between the core's commit and perform_later.
  config.tasker.enqueue_subscriber = ENV["TASKER_ENQUEUE_SUBSCRIBER"] != "0"
  # The sweep runs in the job processes: Sidekiq's, or DelayedJob's workers.
  config.tasker.republisher = JOB_ADAPTER == :delayed_job ? :delayed_job : :sidekiq
  config.tasker.republish_interval = Float(ENV.fetch("TASKER_REPUBLISH_INTERVAL", "15"))
  config.tasker.republish_grace = Float(ENV.fetch("TASKER_REPUBLISH_GRACE", "30"))
  config.tasker.republish_lease = Float(ENV.fetch("TASKER_REPUBLISH_LEASE", "300"))
end

# $TASKER_EVENT_GROUP overrides the enqueue subscriber's group ("" = none,
# every process pushes a job for every event: the negative control of the
# socket end-to-end test).
if ENV.key?("TASKER_EVENT_GROUP")
  Rails.application.config.tasker.event_group = ENV["TASKER_EVENT_GROUP"].empty? ? nil : ENV["TASKER_EVENT_GROUP"]
end

# The Puma test's negative case: a core call while the app boots, so that
# the preloading master loads libtasker (config/puma.rb must refuse to fork).
Rails.application.config.after_initialize { TaskerCore.client.ping } if ENV["TASKER_PING_AT_BOOT"] == "1"
