# frozen_string_literal: true

# DelayedJob (ACTIVE_JOB_ADAPTER=delayed_job): poll for due jobs every
# $DJ_SLEEP_DELAY seconds (its default is 5) and keep failed jobs to check.
if defined?(Delayed::Worker)
  Delayed::Worker.sleep_delay = Float(ENV.fetch("DJ_SLEEP_DELAY", "5"))
  Delayed::Worker.destroy_failed_jobs = false
  Delayed::Worker.max_attempts = 3
end
