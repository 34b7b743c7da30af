# frozen_string_literal: true

module TaskerCore
  module Rails
    # Maps the core's enqueue events to ActiveJob:
    #
    #   task.enqueue   -> TaskRunnerJob.perform_later(task_id)
    #   task.reenqueue -> TaskRunnerJob.set(wait: delay_seconds).perform_later(task_id)
    #
    # The events come after the core committed the durable queue record. If
    # perform_later fails (redis down) or the process dies before it, the
    # record stays, and the Republisher pushes the job later: the error is
    # logged, never raised into the core's event delivery.
    module EnqueueSubscriber
      EVENTS = %w[task.enqueue task.reenqueue].freeze

      class << self
        # Subscribes once per process; returns the subscription.
        def install
          @install_lock ||= Mutex.new
          @install_lock.synchronize do
            @subscription ||= TaskerCore::EventPublisher.subscribe { |event| call(event) }
          end
        end

        def installed?
          !@subscription.nil?
        end

        # Handles one event; returns the enqueued job or nil.
        def call(event)
          name, data = TaskerCore::Rails.event_parts(event)
          return unless EVENTS.include?(name)

          task_id = Integer(data.fetch("task_id"))
          job = TaskerCore::Rails.config.job
          if name == "task.reenqueue" && (delay = data["delay_seconds"].to_f).positive?
            job.set(wait: delay.seconds).perform_later(task_id)
          else
            job.perform_later(task_id)
          end
        rescue StandardError => e
          TaskerCore::Rails.logger.error("tasker: could not enqueue #{name} for #{data.inspect}: #{e.class}: #{e.message}; " \
                                "the re-publisher will push it from the durable queue record")
          nil
        end
      end
    end
  end
end
