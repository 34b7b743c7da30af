# frozen_string_literal: true

module TaskerCore
  # Delivers the core's lifecycle events (task.enqueue, task.reenqueue,
  # task.completed, task.failed, task.blocked, step.started, step.completed,
  # step.failed, step.retry_scheduled, ...) to Ruby blocks, in order, on one
  # Ruby thread that polls the core. Go never calls into Ruby.
  #
  #   TaskerCore::EventPublisher.subscribe("task.enqueue") { |event| ... }
  #
  # The first subscribe opens a subscription at the core before it returns,
  # so every event committed after that call is delivered. The core buffers
  # a bounded number of events per subscription; when a poller falls too far
  # behind events are dropped (durable work never depends on an event: the
  # enqueue record is the source of truth).
  module EventPublisher
    # A block subscribed to some event names (all when none).
    class Subscription
      attr_reader :names

      def initialize(names, block)
        @names = names.map(&:to_s)
        @block = block
      end

      def wants?(name)
        @names.empty? || @names.include?(name)
      end

      def call(event)
        @block.call(event)
      end

      def unsubscribe
        EventPublisher.unsubscribe(self)
      end
    end

    @lock = Mutex.new
    @subscribers = []
    @thread = nil
    @pid = nil
    @core_id = nil

    class << self
      # How long one poll waits for events, in milliseconds.
      attr_accessor :poll_wait_ms

      # Subscribes a block to events of the given names (all when none).
      def subscribe(*names, &block)
        raise ArgumentError, "EventPublisher.subscribe needs a block" unless block

        sub = Subscription.new(names.flatten, block)
        @lock.synchronize do
          @subscribers = @subscribers + [sub]
          start_locked
        end
        sub
      end

      def unsubscribe(sub)
        @lock.synchronize { @subscribers = @subscribers - [sub] }
      end

      def subscribers
        @subscribers
      end

      # Stops the poller and forgets every subscriber.
      def reset!
        stop
        @lock.synchronize { @subscribers = [] }
      end

      # Stops the poller (subscribers stay, a later subscribe restarts it).
      def stop
        thread = nil
        core_id = nil
        @lock.synchronize do
          thread = @thread
          core_id = @core_id
          @stopping = true
          @thread = nil
          @core_id = nil
        end
        thread&.join(5)
        if core_id && @pid == Process.pid
          begin
            TaskerCore.client.events_unsubscribe(core_id)
          rescue Error
            nil
          end
        end
      ensure
        @stopping = false
      end

      private

      def start_locked
        if @pid != Process.pid
          # A fork: the parent's poller thread and subscription are gone here.
          @thread = nil
          @core_id = nil
          @pid = Process.pid
        end
        return if @thread&.alive?

        @core_id ||= TaskerCore.client.events_subscribe["subscription_id"]
        @stopping = false
        @thread = Thread.new { run }
        @thread.name = "tasker_core-events" if @thread.respond_to?(:name=)
      end

      def run
        client = TaskerCore.client
        wait = poll_wait_ms || 200
        until @stopping
          id = @core_id
          break unless id

          begin
            res = client.events_poll(id, wait_ms: wait)
          rescue NotFoundError
            @lock.synchronize { @core_id = client.events_subscribe["subscription_id"] unless @stopping }
            next
          rescue ForkError
            break
          rescue Error => e
            TaskerCore.config.logger&.warn("tasker_core: polling events failed: #{e.class}: #{e.message}")
            sleep 1
            next
          end
          res["events"].each { |doc| dispatch(Event.new(doc)) }
        end
      end

      def dispatch(event)
        @subscribers.each do |sub|
          next unless sub.wants?(event.name)

          begin
            sub.call(event)
          rescue StandardError => e
            TaskerCore.config.logger&.error("tasker_core: event subscriber raised #{e.class}: #{e.message}")
          end
        end
      end
    end
  end
end
