# frozen_string_literal: true

module TaskerCore
  module Rails
    # Maps the core's enqueue events to ActiveJob:
    #
    #   task.enqueue   -> TaskRunnerJob.perform_later(task_id)
    #                     (set(wait: delay_seconds) for a delayed task)
    #   task.reenqueue -> TaskRunnerJob.set(wait: delay_seconds).perform_later(task_id)
    #
    # The events come after the core committed the durable queue record. If
    # perform_later fails (redis down) or the process dies before it, the
    # record stays, and the Republisher pushes the job later: the error is
    # logged, never raised into the event delivery.
    #
    # With the socket transport the subscription joins the core subscription
    # group config.event_group ("rails-enqueue" by default): every Puma and
    # Sidekiq process of the app can keep the subscriber on, and each event
    # is turned into a job by one of them.
    #
    # Subscribing opens the core (EventPublisher.subscribe opens its core
    # subscription before it returns), so #install only arms the subscriber:
    # the subscription is made the first time this process opens its client,
    # before that first call goes out, so the events of every call are seen.
    # Boot stays free of native code, and a process forked after boot
    # subscribes again on its own first call.
    module EnqueueSubscriber
      EVENTS = %w[task.enqueue task.reenqueue].freeze
      # How many enqueued task ids #wait_for remembers.
      RECENT = 1000

      @lock = Mutex.new
      @pushed = ConditionVariable.new
      @recent = []

      extend LazySubscription

      class << self
        def subscription_args
          [EVENTS, TaskerCore::Rails.config.enqueue_event_group]
        end

        def deliver(event)
          call(event)
        end

        # Handles one event; returns the enqueued job or nil.
        def call(event)
          name, data = TaskerCore::Rails.event_parts(event)
          return unless EVENTS.include?(name)

          task_id = Integer(data.fetch("task_id"))
          job = TaskerCore::Rails.config.job
          delay = data["delay_seconds"].to_f
          # On the poller thread: the executor returns the connection an
          # ActiveRecord-backed job backend (DelayedJob) checked out to push.
          pushed = TaskerCore::Rails.with_executor do
            if delay.positive? # a retry's backoff, or a delayed task (run_at / delay_seconds)
              job.set(wait: delay.seconds).perform_later(task_id)
            else
              job.perform_later(task_id)
            end
          end
          remember(task_id)
          pushed
        rescue StandardError => e
          TaskerCore::Rails.logger.error("could not enqueue #{name} for #{data.inspect}: #{e.class}: #{e.message}; " \
                                         "the re-publisher will push it from the durable queue record")
          nil
        end

        # Waits until this process pushed a job for task_id (true) or timeout
        # seconds passed (false). For short-lived processes (runner scripts,
        # rake tasks) that create a task and exit: events are delivered by a
        # poller thread, and a process that exits first leaves the task to
        # the re-publisher (after its grace period).
        def wait_for(task_id, timeout: 5)
          deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
          @lock.synchronize do
            until @recent.include?(task_id)
              left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
              return false if left <= 0

              @pushed.wait(@lock, left)
            end
            true
          end
        end

        private

        def remember(task_id)
          @lock.synchronize do
            @recent << task_id
            @recent.shift while @recent.size > RECENT
            @pushed.broadcast
          end
        end
      end

      # Prepended to TaskerCore's singleton: subscribes the enqueue
      # subscriber and the notifications relay on the first TaskerCore.client
      # of a process. (Replace with a gem hook when one exists, see
      # RAILS_NEEDS.md.)
      module ClientHook
        def self.attach
          return if TaskerCore.singleton_class.include?(self)

          TaskerCore.singleton_class.prepend(self)
        end

        def client
          c = super
          return c if Thread.current[:tasker_rails_subscribing]

          EnqueueSubscriber.client_opened
          Notifications.client_opened
          c
        end
      end
    end
  end
end
