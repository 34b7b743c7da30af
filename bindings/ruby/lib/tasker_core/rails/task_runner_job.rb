# frozen_string_literal: true

require "active_job"

module TaskerCore
  module Rails
    # Runs one task: handle(task_id) drives its ready steps through the Ruby
    # step handlers until the core finalizes the task or re-enqueues it (the
    # re-enqueue comes back as a task.reenqueue event, which the enqueue
    # subscriber turns into a delayed job).
    #
    # lease_owner is set when the re-publisher pushed the job for a durable
    # queue record it claimed: after handle the job acks the record, which
    # deletes it unless the core's finalizer rewrote it meanwhile.
    #
    # Errors from the core (database down, ...) propagate, so the job backend
    # retries the job; a task that no longer exists is dropped.
    class TaskRunnerJob < ActiveJob::Base
      queue_as { TaskerCore::Rails.config.queue_name }

      def perform(task_id, lease_owner = nil)
        result = ActiveSupport::Notifications.instrument("handle.tasker_core", task_id: task_id, lease_owner: lease_owner) do |payload|
          payload[:result] = TaskerCore::Rails.handle(task_id)
        end
        # A task handed back on shutdown keeps its queue record (rewritten
        # due now by the yield, or still leased: swept again when it lapses).
        TaskerCore::Rails.queue_store.ack(task_id, lease_owner) if lease_owner && !TaskerCore.shutting_down?
        hook = TaskerCore::Rails.config.on_task_handled
        hook&.call(task_id, result)
        result
      rescue StandardError => e
        raise unless TaskerCore::Rails.not_found?(e)

        TaskerCore::Rails.logger.warn("task #{task_id} does not exist; dropping the job (#{e.message})")
        nil
      end
    end
  end
end
