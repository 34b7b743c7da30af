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
  #
  # Groups (competing consumers): subscribe(..., group: "name") joins the core
  # subscription group "name". Every process whose block subscribes with
  # that group (and the same event names) shares one buffer at the core, and
  # each event goes to ONE of them. Useful with the socket transport, where
  # many processes subscribe to one `tasker serve` but one of them should
  # act on each task.enqueue. Blocks without a group receive every event as
  # before. In one process, all blocks of a group share that process's
  # membership (each sees the events this process was handed).
  module EventPublisher
    # A block subscribed to some event names (all when none), optionally in
    # a group.
    class Subscription
      attr_reader :names, :group

      def initialize(names, block, group = nil)
        @names = names.map(&:to_s)
        @block = block
        @group = group
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

    # One core subscription (for the blocks without a group, or for one
    # group) and the thread that polls it.
    class Channel
      attr_reader :group, :kinds
      attr_accessor :core_id, :thread, :stopping

      def initialize(group, kinds)
        @group = group
        @kinds = kinds
        @stopping = false
      end

      def subscribe(client)
        params = { "kinds" => kinds, "buffer" => 0 }
        params["group"] = group if group
        client.call("events_subscribe", params)["subscription_id"]
      end
    end

    @lock = Mutex.new
    @subscribers = []
    @channels = {}
    @pid = nil

    class << self
      # How long one poll waits for events, in milliseconds.
      attr_accessor :poll_wait_ms

      # Subscribes a block to events of the given names (all when none).
      # group: a core subscription group (see above); nil (default) receives
      # every event. Blocks of one group must name the same events.
      def subscribe(*names, group: nil, &block)
        raise ArgumentError, "EventPublisher.subscribe needs a block" unless block

        group = group&.to_s
        raise ArgumentError, "group must not be empty" if group && group.strip.empty?

        sub = Subscription.new(names.flatten, block, group)
        @lock.synchronize do
          if group
            other = @subscribers.find { |s| s.group == group }
            if other && other.names.sort != sub.names.sort
              raise ArgumentError, "group #{group.inspect} already subscribes #{other.names.inspect} in this process"
            end
          end
          @subscribers = @subscribers + [sub]
          start_locked(group, group ? sub.names.uniq.sort : [])
        end
        sub
      end

      def unsubscribe(sub)
        @lock.synchronize { @subscribers = @subscribers - [sub] }
        # A group nobody in this process listens to any more: leave it, so
        # that its events go to the other members.
        stop_channel(sub.group) if sub.group && @subscribers.none? { |s| s.group == sub.group }
      end

      def subscribers
        @subscribers
      end

      # Whether a poller thread runs in this process.
      def running?
        @pid == Process.pid && @channels.values.any? { |ch| ch.thread&.alive? }
      end

      # Stops the pollers and forgets every subscriber.
      def reset!
        stop
        @lock.synchronize { @subscribers = [] }
      end

      # Stops the pollers (subscribers stay, a later subscribe restarts them).
      def stop
        @lock.synchronize { @channels.keys }.each { |g| stop_channel(g) }
      end

      private

      def stop_channel(group)
        ch = @lock.synchronize do
          c = @channels.delete(group)
          c&.stopping = true
          c
        end
        return unless ch

        ch.thread&.join(5)
        return unless ch.core_id && @pid == Process.pid

        begin
          TaskerCore.client.events_unsubscribe(ch.core_id)
        rescue Error
          nil
        end
      end

      def start_locked(group, kinds)
        if @pid != Process.pid
          # A fork: the parent's poller threads and subscriptions are gone here.
          @channels = {}
          @pid = Process.pid
        end
        ch = (@channels[group] ||= Channel.new(group, kinds))
        return if ch.thread&.alive?

        ch.core_id ||= ch.subscribe(TaskerCore.client)
        ch.stopping = false
        ch.thread = Thread.new { run(ch) }
        ch.thread.name = "tasker_core-events#{group ? "-#{group}" : ''}" if ch.thread.respond_to?(:name=)
      end

      def run(channel)
        client = TaskerCore.client
        wait = poll_wait_ms || 200
        until channel.stopping
          id = channel.core_id
          break unless id

          begin
            res = client.events_poll(id, wait_ms: wait)
          rescue NotFoundError
            @lock.synchronize { channel.core_id = channel.subscribe(client) unless channel.stopping }
            next
          rescue ForkError
            break
          rescue Error => e
            TaskerCore.config.logger&.warn("tasker_core: polling events failed: #{e.class}: #{e.message}")
            sleep 1
            next
          end
          res["events"].each { |doc| dispatch(Event.new(doc), channel.group) }
        end
      end

      def dispatch(event, group)
        @subscribers.each do |sub|
          next unless sub.group == group && sub.wants?(event.name)

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
