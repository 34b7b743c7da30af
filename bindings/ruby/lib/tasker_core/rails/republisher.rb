# frozen_string_literal: true

require "securerandom"
require "socket"

module TaskerCore
  module Rails
    # Closes the gap between the core's commit and perform_later.
    #
    # The core writes a durable enqueue record (tasker_task_queue) in the same
    # transaction as the state change that makes a task runnable, and only
    # then publishes task.enqueue / task.reenqueue. If the process dies
    # before the subscriber's perform_later reached redis, or redis refused
    # it, the record is the only trace. Each sweep:
    #
    # 1. claims records that have been due for at least `grace` seconds and
    #    are not leased (or whose lease expired), taking a lease of `lease`
    #    seconds under this process's owner name (FOR UPDATE SKIP LOCKED, so
    #    several Sidekiq processes can sweep at once);
    # 2. pushes TaskRunnerJob.perform_later(task_id, owner) for each;
    # 3. the job, after handle(task_id), acks: the record is deleted if this
    #    owner still holds it. Usually the core already rewrote it (the
    #    finalizer deletes it when the task ends and replaces it, lease
    #    cleared, on a re-enqueue), and the ack is a no-op.
    #
    # A job lost again (redis flushed, job dropped) leaves the record leased
    # until the lease expires; the next sweep then pushes it again. So every
    # due record leads to a handle at least once; duplicates are harmless
    # because handle(task_id) claims steps atomically and a finished task has
    # nothing to claim.
    class Republisher
      attr_reader :owner

      def initialize(config: TaskerCore::Rails.config, store: nil, owner: nil, logger: nil)
        @config = config
        @store = store
        @owner = owner || "rails-republisher:#{Socket.gethostname}:#{Process.pid}:#{SecureRandom.hex(4)}"
        @logger = logger
        @lock = Mutex.new
        @wakeup = ConditionVariable.new
        @stopping = false
        @thread = nil
      end

      # One sweep; returns the task ids whose jobs were pushed.
      def sweep
        entries = store.claim(owner: owner, limit: @config.republish_batch, lease: @config.republish_lease,
                              grace: @config.republish_grace)
        pushed = []
        entries.each do |entry|
          @config.job.perform_later(entry.task_id, owner)
          pushed << entry.task_id
        rescue StandardError => e
          # The lease stays; the record is pushed again when it expires.
          log(:error, "re-publishing task #{entry.task_id} failed: #{e.class}: #{e.message}")
          break
        end
        log(:info, "re-published #{pushed.size} task(s) from the durable queue: #{pushed.join(', ')}") if pushed.any?
        pushed
      end

      # Sweeps every republish_interval seconds in a background thread until
      # #stop. Errors are logged; the thread keeps going.
      def start
        return self if @thread&.alive?

        @stopping = false
        @thread = Thread.new do
          Thread.current.name = "tasker-republisher"
          loop do
            begin
              # An ActiveRecord-backed job backend (DelayedJob) checks out a
              # connection to push: the executor gives it back.
              TaskerCore::Rails.with_executor { sweep }
            rescue StandardError => e
              log(:error, "re-publisher sweep failed: #{e.class}: #{e.message}")
            end
            break if wait_or_stop(@config.republish_interval.to_f)
          end
        end
        self
      end

      def stop
        return unless @thread

        @lock.synchronize do
          @stopping = true
          @wakeup.signal
        end
        @thread.join(10)
        @thread = nil
        store.close if store.respond_to?(:close)
      end

      def running?
        !!@thread&.alive?
      end

      private

      # Sleeps up to seconds; true when #stop was called.
      def wait_or_stop(seconds)
        @lock.synchronize do
          @wakeup.wait(@lock, seconds) unless @stopping
          @stopping
        end
      end

      def store
        @store ||= QueueStore.new
      end

      def log(level, msg)
        (@logger || TaskerCore::Rails.logger).public_send(level, msg)
      end
    end
  end
end
