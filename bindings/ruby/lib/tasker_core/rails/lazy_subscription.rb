# frozen_string_literal: true

module TaskerCore
  module Rails
    # A subscription to the core's events that is armed at boot and made the
    # first time this process opens its client (EnqueueSubscriber::ClientHook),
    # so boot stays free of native code and a process forked after boot
    # subscribes again on its own first call. Extended by EnqueueSubscriber
    # and Notifications, which provide:
    #
    #   subscription_args -> [events, group], or nil when switched off
    #   deliver(event)    -> handles one event (on the poller thread)
    #
    # and a @lock Mutex.
    module LazySubscription
      # Arms the subscription (idempotent). Nothing is opened here.
      def install
        @armed = true
        EnqueueSubscriber::ClientHook.attach
        # A client opened before (a console that already made calls).
        subscribe_now if TaskerCore.instance_variable_get(:@client)
        self
      end

      def installed?
        !!@armed
      end

      def uninstall
        @armed = false
        @lock.synchronize do
          @subscription&.unsubscribe
          @subscription = nil
        end
      end

      # Whether this process holds a live subscription.
      def subscribed?
        sub = @subscription
        return false if sub.nil? || @subscribed_pid != Process.pid

        pub = TaskerCore::EventPublisher
        # TaskerCore.reset! forgets subscribers; configure stops the poller.
        pub.subscribers.include?(sub) && (!pub.respond_to?(:running?) || pub.running?)
      end

      # Called by the client hook whenever the client is asked for.
      def client_opened
        return if !@armed || subscribed? || Thread.current[:tasker_rails_subscribing]

        subscribe_now
      end

      def subscribe_now
        args = subscription_args
        return unless args

        events, group = args
        Thread.current[:tasker_rails_subscribing] = true
        @lock.synchronize do
          return if subscribed?

          @subscription&.unsubscribe # the parent's, in a forked child
          @subscription = TaskerCore::EventPublisher.subscribe(*events, group: group) { |event| deliver(event) }
          @subscribed_pid = Process.pid
        end
      ensure
        Thread.current[:tasker_rails_subscribing] = false
      end
    end
  end
end
