# frozen_string_literal: true

# Records every TaskRunnerJob run in redis (list rails_app:handled) so the
# end-to-end test can check which process ran which task, when, and with what
# outcome.
ActiveSupport::Notifications.subscribe("handle.tasker_core") do |_name, started, finished, _id, payload|
  result = payload[:result] || {}
  entry = {
    task_id: payload[:task_id], lease_owner: payload[:lease_owner], pid: Process.pid,
    sidekiq: defined?(Sidekiq) && Sidekiq.server? ? true : false,
    started: started.to_f, finished: finished.to_f,
    outcome: result["outcome"] || result[:outcome], status: result["status"] || result[:status],
    error: payload[:exception]&.join(": ")
  }
  Sidekiq.redis { |r| r.rpush("rails_app:handled", entry.to_json) }
end

# Records every job push (perform_later, by the enqueue subscriber or the
# re-publisher) in redis (list rails_app:pushed): which process pushed which
# task's job.
# (enqueue_at.active_job for set(wait:)).
ActiveSupport::Notifications.subscribe(/\Aenqueue(_at)?\.active_job\z/) do |_name, _started, _finished, _id, payload|
  job = payload[:job]
  next unless job

  entry = { task_id: job.arguments.first, lease_owner: job.arguments[1], pid: Process.pid, job_id: job.job_id,
            scheduled_at: job.scheduled_at }
  Sidekiq.redis { |r| r.rpush("rails_app:pushed", entry.to_json) }
end

# Records the core's events as the integration instruments them
# (ActiveSupport::Notifications "task.completed.tasker_core", ...) in redis
# (list rails_app:notifications): name, task, step and process.
ActiveSupport::Notifications.subscribe(/\A(task|step)\.[a-z_]+\.tasker_core\z/) do |name, _started, _finished, _id, payload|
  entry = { name: name, task_id: payload[:task_id], step_name: payload[:step_name], pid: Process.pid }
  Sidekiq.redis { |r| r.rpush("rails_app:notifications", entry.to_json) }
end
