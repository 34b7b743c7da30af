# frozen_string_literal: true

module TaskerCore
  module Rails
    # The core's durable enqueue records (tasker_task_queue), as the
    # Republisher uses them: claim due records with a lease, ack them after
    # the job ran. Both calls go through the gem's client (queue_claim /
    # queue_ack), so they work on both transports and the gem never touches
    # the database itself.
    class QueueStore
      # One claimed record.
      Entry = Struct.new(:task_id, :operation, :run_at, :priority, :attempts, keyword_init: true)

      def initialize(client = nil)
        @client = client
      end

      # Claims up to limit records due for at least grace seconds, unleased
      # or with an expired lease, leasing them to owner for lease seconds.
      def claim(owner:, limit:, lease:, grace:)
        res = client.queue_claim(owner: owner, limit: limit, lease_seconds: lease, grace_seconds: grace)
        Array(res["entries"]).map do |e|
          Entry.new(task_id: Integer(e["task_id"]), operation: e["operation"], run_at: e["run_at"],
                    priority: e["priority"], attempts: e["attempts"])
        end
      end

      # Deletes the task's record if owner still holds its lease (the core's
      # finalizer did not rewrite it meanwhile).
      def ack(task_id, owner)
        client.queue_ack(task_id, owner)
        true
      end

      private

      def client
        @client || TaskerCore.client
      end
    end
  end
end
