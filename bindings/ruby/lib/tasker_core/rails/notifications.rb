# frozen_string_literal: true

require "active_support/notifications"

module TaskerCore
  module Rails
    # The core's task and step events as ActiveSupport::Notifications, so
    # APM tools and log subscribers see them: every core event NAME (see
    # docs/events.md) is instrumented as "NAME.tasker_core", e.g.
    #
    #   task.initialized.tasker_core  task.started.tasker_core
    #   task.completed.tasker_core    task.failed.tasker_core    task.blocked.tasker_core
    #   task.enqueue.tasker_core      task.reenqueue.tasker_core task.cancelled.tasker_core
    #   step.started.tasker_core      step.completed.tasker_core step.failed.tasker_core
    #   step.retry_scheduled.tasker_core ...
    #
    # with the event's data as payload (symbol keys) plus :task_id, :step_id,
    # :step_name and :time when the event has them, and :event (the core's
    # name). Subscribe with a regexp
    # for all of them:
    #
    #   ActiveSupport::Notifications.subscribe(/\.tasker_core\z/) { |name, start, finish, id, payload| ... }
    #
    # The integration's own instrumentation, measured where it runs:
    # "handle.tasker_core" (one TaskRunnerJob run: :task_id, :lease_owner,
    # :result) and "process_step.tasker_core" (one step handler call:
    # :task_id, :step_id, :step_name, :handler_class, :attempt, :success).
    #
    # Events come from the poller thread of EventPublisher, so they are
    # instrumented there, after they happened (their duration is 0). Like
    # the enqueue subscriber, the relay is only armed at boot and subscribes
    # when the process opens its client. With the embedded transport a
    # process sees the events of its own engine; with the socket transport
    # the app's processes share the server's events in the core subscription
    # group "rails-notifications", so each event is instrumented once, by
    # one of them (config.tasker.instrument_events).
    module Notifications
      SUFFIX = "tasker_core"

      @lock = Mutex.new

      extend LazySubscription

      class << self
        # Every core event, in the group notifications_subscription names
        # (nil: instrumenting is off).
        def subscription_args
          on, group = TaskerCore::Rails.config.notifications_subscription
          on ? [[], group] : nil
        end

        def deliver(event)
          instrument(event)
        end

        # Instruments one core event; returns the notification name.
        def instrument(event)
          name, data = TaskerCore::Rails.event_parts(event)
          return if name.empty?

          payload = data.transform_keys(&:to_sym)
          %i[task_id step_id step_name time].each do |k|
            v = event.respond_to?(k) ? event.public_send(k) : nil
            payload[k] = v unless v.nil?
          end
          payload[:event] = name
          full = "#{name}.#{SUFFIX}"
          ActiveSupport::Notifications.instrument(full, payload)
          full
        rescue StandardError => e
          TaskerCore::Rails.logger.error("could not instrument #{name}: #{e.class}: #{e.message}")
          nil
        end
      end
    end
  end
end
