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
