# frozen_string_literal: true

module TaskerCore
  # The gem's connection to the core, whichever the transport. Every method
  # is one call of the protocol (docs/api.md, "RPC and pull API"); #call is
  # the generic form. Results are Hashes with String keys.
  class Client
    attr_reader :transport

    def initialize(config)
      @config = config
      @transport =
        case config.transport
        when :embedded then Transport::Embedded.new(config)
        when :socket then Transport::Socket.new(config)
        else raise ConfigurationError, "unknown transport #{config.transport.inspect}"
        end
    end

    # Calls a protocol method with a params Hash; returns the result Hash.
    def call(method, params = {}, timeout: nil)
      @transport.call(method, params, timeout: timeout)
    end

    def ping
      call("ping")
    end

    def info
      call("info")
    end

    # TaskHandlerRegistry lookup: {"found", "namespace", "name", "version",
    # "task_handler_class", "yaml_template", "template"}.
    def find_handler(namespace:, name:, version: nil)
      call("find_handler", { "namespace" => namespace.to_s, "name" => name.to_s, "version" => version.to_s })
    end

    # Creates a task from a TaskRequest (or Hash): {"task" => {...}, "created" => bool}.
    # The current W3C trace context (TaskerCore::TraceContext.current) goes
    # with it as the tag "traceparent:<value>" unless the request has such
    # a tag (or config.propagate_trace_context is false).
    def initialize_task(request)
      call("initialize_task", TraceContext.tag_request(request.respond_to?(:to_h) ? request.to_h : request, @config))
    end

    # Creates many tasks (POST /v1/tasks/batch's document): requests are
    # TaskRequest documents (Hashes), tagged with the current trace context
    # like initialize_task's. Answers {"created", "existing", "failed",
    # "results" => [{"index", "status", "task" | "error"}]}.
    def create_tasks(requests, timeout: nil)
      tagged = requests.map { |r| TraceContext.tag_request(r.respond_to?(:to_h) ? r.to_h : r, @config) }
      @transport.create_tasks(tagged, timeout: timeout)
    end

    # The task with its steps: {"task" => {..., "steps" => [...]}}.
    def task(task_id)
      call("task", { "task_id" => Integer(task_id) })
    end

    # The task's audit trail: {"task" => [transition...], "steps" => [transition...]};
    # a step transition's "metadata" holds its "attempt" and, for a failure, "error".
    def transitions(task_id)
      call("transitions", { "task_id" => Integer(task_id) })
    end

    # Why each step is or is not running: {"task_id", "status", "steps" =>
    # [{"name", "state", "ready", "reason", ...}]}, the document of
    # GET /v1/tasks/{id}/explain ("waiting: rate limit stripe until ...").
    def explain(task_id)
      call("explain", { "task_id" => Integer(task_id) })
    end

    def claim_steps(task_id, owner:, limit: 0)
      call("claim_steps", { "task_id" => Integer(task_id), "owner" => owner, "limit" => Integer(limit) })
    end

    # With finalize: true (nothing left in flight) the finalizer decides in
    # the same call; its result is under "final" (as #finalize returns it).
    def report_results(task_id, owner:, results:, finalize: false)
      params = { "task_id" => Integer(task_id), "owner" => owner, "results" => results }
      params["finalize"] = true if finalize
      call("report_results", params)
    end

    def extend_leases(step_ids, owner:)
      call("extend_leases", { "owner" => owner, "step_ids" => step_ids })
    end

    def finalize(task_id, owner:)
      call("finalize", { "task_id" => Integer(task_id), "owner" => owner })
    end

    # Hands a task back to the queue, due now (after releasing unfinished
    # attempts with {"release" => true} results): outcome "yielded".
    def yield_task(task_id, owner:, reason: nil)
      call("yield", { "task_id" => Integer(task_id), "owner" => owner, "reason" => reason.to_s })
    end

    # Runs the task with the Go coordinator (Go and built-in handlers only).
    def handle_in_go(task_id)
      call("handle", { "task_id" => Integer(task_id) })
    end

    def cancel_task(task_id, actor: nil, reason: nil)
      call("cancel", { "task_id" => Integer(task_id), "actor" => actor.to_s, "reason" => reason.to_s })
    end

    def retry_steps(task_id, steps: [], actor: nil, reason: nil)
      call("retry", { "task_id" => Integer(task_id), "steps" => steps, "actor" => actor.to_s, "reason" => reason.to_s })
    end

    def resolve_step(task_id, step, actor: nil, reason: nil)
      call("resolve", { "task_id" => Integer(task_id), "step" => step.to_s, "actor" => actor.to_s, "reason" => reason.to_s })
    end

    # One pass of the expired-lease rescuer: {"rescued" => n}.
    def rescue_expired
      call("rescue")
    end

    # direction: "up", "down" or "status" => {"migrations" => [...]}.
    def migrate(direction: "up", steps: 0)
      call("migrate", { "direction" => direction.to_s, "steps" => Integer(steps) })
    end

    # Leases due durable enqueue records: {"entries" => [{"task_id", "operation", "run_at", ...}]}.
    def queue_claim(owner:, limit:, lease_seconds:, grace_seconds: 0)
      call("queue_claim", { "owner" => owner, "limit" => Integer(limit), "lease_seconds" => lease_seconds.to_f,
                            "grace_seconds" => grace_seconds.to_f })
    end

    # Deletes the task's enqueue record if owner still holds its lease.
    def queue_ack(task_id, owner)
      call("queue_ack", { "task_id" => Integer(task_id), "owner" => owner })
    end

    def queue_list
      call("queue_list")
    end

    # The cron schedules with their next runs: {"schedules" => [...]}
    # (see TaskerCore.schedules).
    def schedules
      call("schedules")
    end

    # group: a subscription group name; its members share one buffer and
    # each event goes to one of them (see EventPublisher.subscribe).
    def events_subscribe(kinds: [], buffer: 0, group: nil)
      params = { "kinds" => kinds.map(&:to_s), "buffer" => Integer(buffer) }
      params["group"] = group.to_s if group
      call("events_subscribe", params)
    end

    def events_poll(subscription_id, max: 0, wait_ms: 0)
      call("events_poll", { "subscription_id" => subscription_id, "max" => Integer(max), "wait_ms" => Integer(wait_ms) },
           timeout: @config.call_timeout.to_f + (wait_ms / 1000.0))
    end

    def events_unsubscribe(subscription_id)
      call("events_unsubscribe", { "subscription_id" => subscription_id })
    end

    def close
      @transport.close
    end
  end
end
