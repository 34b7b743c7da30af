# frozen_string_literal: true

require "json"
require "tasker_core/version"
require "tasker_core/errors"
require "tasker_core/configuration"
require "tasker_core/models"
require "tasker_core/trace_context"
require "tasker_core/transport/socket"
require "tasker_core/transport/embedded" # pure Ruby: ffi and libtasker load on first call
require "tasker_core/client"
require "tasker_core/step_handlers"
require "tasker_core/api_step_handler"
require "tasker_core/task_handlers"
require "tasker_core/event_publisher"

# TaskerCore: Ruby task and step handlers for the Tasker workflow engine. The
# Go core decides everything; Ruby pulls claimed steps, runs the handlers in
# threads and reports the results. Requiring the gem loads no native code.
module TaskerCore
  @lock = Mutex.new

  class << self
    # The settings (see Configuration).
    def config
      @config ||= Configuration.new
    end

    # Changes the settings; a client opened before is closed, and the next
    # call opens one with the new settings.
    def configure
      yield config if block_given?
      reset_client!
      config
    end

    # The client of the configured transport (opened lazily, once per process).
    def client
      c = @client
      return c if c && @client_pid == Process.pid

      @lock.synchronize do
        if @client.nil? || @client_pid != Process.pid
          @client = Client.new(config)
          @client_pid = Process.pid
          @step_lease = nil
        end
        @client
      end
    end

    # Seconds a claimed step stays leased without a heartbeat (asked from the core once).
    def step_lease_seconds
      @step_lease ||= client.info["step_lease_seconds"].to_f
    end

    # Creates a task in one line and returns it as a TaskerCore::Task (its
    # status, steps and their errors; #created? is false when the
    # idempotency key named an existing task):
    #
    #   TaskerCore.create_task("shop/order_fulfillment", { "order_id" => 42 }, idempotency_key: "order-42")
    #
    # template: "namespace/name", "namespace/name@version", or a name in
    # the "default" namespace. Other keywords are TaskRequest fields
    # (initiator:, source_system:, reason:, tags:, priority:, step_inputs:,
    # bypass_steps:, version:, namespace:). The context is validated against
    # the template's schema (InvalidContextError); an unknown template is a
    # NotFoundError.
    def create_task(template, context = {}, **fields)
      res = client.initialize_task(task_request(template, context, **fields))
      Task.new(res["task"], created: res["created"])
    end

    # Creates many tasks with one call: the core checks each request like
    # create_task's and writes the valid ones 1,000 per transaction, many
    # times faster than one create_task each. Returns one
    # TaskerCore::TaskResult per request, in order: #task (a Task, with
    # #created? false for an existing idempotency key, or a key repeated
    # earlier in the batch) or #error (the exception create_task would have
    # raised, not raised: NotFoundError, InvalidContextError, ...). A bad
    # request fails alone. Each request is a TaskRequest, a Hash of its
    # fields (optionally with template: "namespace/name@version"), or an
    # Array [template, context, fields]:
    #
    #   results = TaskerCore.create_tasks([
    #     ["shop/order_fulfillment", { "order_id" => 1 }, { idempotency_key: "order-1" }],
    #     { template: "shop/order_fulfillment", context: { "order_id" => 2 } },
    #   ])
    #   results.reject(&:ok?).each { |r| warn "request #{r.index}: #{r.error.message}" }
    #
    # Raises only for the whole batch: more than 5,000 requests, or the
    # database down before anything was written (then nothing was).
    def create_tasks(requests)
      reqs = Array(requests).map { |r| batch_request(r) }
      return [] if reqs.empty?

      client.create_tasks(reqs)["results"].map { |item| TaskResult.new(item) }
    end

    # The TaskRequest create_task sends (see there).
    def task_request(template, context = {}, **fields)
      namespace, name, version = parse_template_name(template.to_s)
      fields[:namespace] ||= namespace
      fields[:version] ||= version
      TaskRequest.new(name: name, context: context || {}, **fields)
    end

    # The task with its steps, as a TaskerCore::Task (NotFoundError when
    # there is none).
    def task(task_id)
      Task.new(client.task(task_id)["task"])
    end

    # The cron schedules of the templates the core loaded (the highest
    # version of each), as Hashes with "namespace", "template", "version",
    # "name", "cron", "time_zone", "missed" ("skip" | "catch_up"),
    # "enabled", "context", "next_runs" (UTC, ISO 8601), "next_runs_local"
    # (the same instants in the schedule's zone), "last_tick" (the latest
    # tick that has a task, or nil), "last_task_id" and "running" (whether
    # a Run loop of the core evaluates it). Runners create the tasks.
    def schedules
      client.schedules["schedules"]
    end

    # The per-attempt history of a task: every attempt of every step
    # (TaskerCore::Attempt: step_name, number, worker, started_at,
    # finished_at, status, error with class, message and backtrace), oldest
    # first. step: one step's attempts only.
    def attempts(task_id, step: nil)
      all = Attempt.from_transitions(client.transitions(task_id))
      step.nil? ? all : all.select { |a| a.step_name == step.to_s }
    end

    # Registers a step handler class under a handler_class name (for names
    # that are not Ruby constants, or to override one).
    def register_step_handler(name, klass)
      StepHandlers.register(name, klass)
    end

    # Asks every running #handle of this process to hand its task back: stop
    # claiming, let in-flight handlers finish for config.shutdown_grace
    # seconds, report them, release the unfinished steps (no attempt
    # counted) and yield the task to the queue, due now. Handles started
    # afterwards yield at once. The Rails integration calls it on Sidekiq's
    # :shutdown event. Safe from a signal handler (it only sets a flag).
    def shutdown!
      @shutdown_at ||= Process.clock_gettime(Process::CLOCK_MONOTONIC)
      @shutdown_pid = Process.pid
      true
    end

    # Whether shutdown! was called in this process.
    def shutting_down?
      !@shutdown_at.nil? && @shutdown_pid == Process.pid
    end

    # When shutdown! was called (CLOCK_MONOTONIC seconds), or nil.
    def shutdown_at
      shutting_down? ? @shutdown_at : nil
    end

    # Clears the shutdown flag (tests; a process that keeps running).
    def cancel_shutdown!
      @shutdown_at = nil
    end

    # Stops the event poller and closes the client (tests, shutdown).
    def reset!
      EventPublisher.reset!
      reset_client!
    end

    # Whether libtasker is loaded in this process image.
    def native_loaded?
      Transport::Embedded.loaded?
    end

    private

    # One request of create_tasks as the protocol document.
    def batch_request(req)
      case req
      when TaskRequest then req.to_h
      when Array
        template, context, fields = req
        task_request(template, context || {}, **(fields || {}).transform_keys(&:to_sym)).to_h
      when Hash
        h = req.transform_keys(&:to_sym)
        template = h.delete(:template)
        return req if template.nil?

        task_request(template, h.delete(:context) || {}, **h).to_h
      else raise ArgumentError, "create_tasks: a request is a TaskRequest, Hash or Array, got #{req.class}"
      end
    end

    def parse_template_name(str)
      path, version = str.split("@", 2)
      parts = path.split("/")
      raise ArgumentError, "template name #{str.inspect}: want \"namespace/name\" or \"namespace/name@version\"" if
        parts.empty? || parts.size > 2 || parts.any?(&:empty?)

      parts.unshift("default") if parts.size == 1
      [parts[0], parts[1], version.nil? || version.empty? ? nil : version]
    end

    def reset_client!
      c = nil
      @lock.synchronize do
        c = @client if @client_pid == Process.pid
        @client = nil
        @step_lease = nil
      end
      EventPublisher.stop if c
      c&.close
    end
  end
end

require "tasker_core/railtie" if defined?(::Rails::Railtie)
