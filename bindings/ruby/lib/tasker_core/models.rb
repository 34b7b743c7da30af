# frozen_string_literal: true

require "json"
require "time"

module TaskerCore
  # A request for a new task (namespace/name/version of a template plus the
  # context and metadata).
  class TaskRequest
    FIELDS = %i[namespace name version context initiator source_system reason tags bypass_steps priority
                idempotency_key step_inputs run_at delay_seconds].freeze
    attr_accessor(*FIELDS)

    def initialize(name:, namespace: "default", version: nil, context: {}, initiator: nil, source_system: nil,
                   reason: nil, tags: [], bypass_steps: [], priority: 0, idempotency_key: nil, step_inputs: nil,
                   run_at: nil, delay_seconds: nil)
      @name = name
      @namespace = namespace
      @version = version
      @context = context
      @initiator = initiator
      @source_system = source_system
      @reason = reason
      @tags = tags
      @bypass_steps = bypass_steps
      @priority = priority
      @idempotency_key = idempotency_key
      @step_inputs = step_inputs
      # A delayed task: run_at (a Time, or an ISO 8601 String) or
      # delay_seconds (Numeric, e.g. 15.minutes), not both.
      @run_at = run_at.respond_to?(:utc) ? run_at.utc.iso8601(6) : run_at
      @delay_seconds = delay_seconds&.to_f
    end

    # The protocol document (String keys, empty fields left out).
    def to_h
      h = {}
      FIELDS.each do |f|
        v = public_send(f)
        next if v.nil? || (v.respond_to?(:empty?) && v.empty? && f != :context)

        h[f.to_s] = v
      end
      h["priority"] = Integer(priority || 0)
      h
    end
  end

  # The outcome of one request of TaskerCore.create_tasks: #index (its
  # position in the batch), #status ("created", "existing" or "error"), and
  # #task (a Task) or #error (the exception create_task would have raised,
  # not raised).
  class TaskResult
    attr_reader :index, :status, :task, :error

    def initialize(doc)
      @index = doc["index"]
      @status = doc["status"]
      @task = doc["task"] && Task.new(doc["task"], created: @status == "created")
      @error = doc["error"] && TaskerCore.core_error(doc["error"])
    end

    # Whether the request has its task (created or existing).
    def ok?
      @error.nil?
    end

    def created?
      @status == "created"
    end

    def existing?
      @status == "existing"
    end

    def error?
      !ok?
    end
  end

  # A task: what a step handler works for (the claim's view: context and
  # metadata), and what TaskerCore.create_task / TaskerCore.task return (with
  # its steps, their attempts and errors). Read-only; #reload fetches it
  # again. #[] and #to_h give the protocol document (String keys).
  class Task
    attr_reader :task_id, :namespace, :name, :version, :status, :context, :priority, :tags, :initiator,
                :source_system, :reason, :max_parallel_steps, :idempotency_key, :created_at, :updated_at,
                :completed_at, :run_at, :retention_seconds, :retention_failed_seconds, :keep_until

    def initialize(doc, created: nil)
      @doc = doc
      @task_id = doc["task_id"]
      @namespace = doc["namespace"]
      @name = doc["name"]
      @version = doc["version"]
      @status = doc["status"]
      @context = doc["context"] || {}
      @priority = doc["priority"]
      @tags = doc["tags"] || []
      @initiator = doc["initiator"]
      @source_system = doc["source_system"]
      @reason = doc["reason"]
      @max_parallel_steps = doc["max_parallel_steps"]
      @idempotency_key = doc["idempotency_key"]
      @created_at = doc["created_at"]
      @updated_at = doc["updated_at"]
      @completed_at = doc["completed_at"]
      @run_at = doc["run_at"]
      # Retention: seconds the task is kept once finished (complete,
      # cancelled, resolved manually) and once failed; nil keeps it for
      # ever. keep_until: when a finished task will be pruned (nil while it
      # runs or when kept for ever).
      @retention_seconds = doc["retention_seconds"]
      @retention_failed_seconds = doc["retention_failed_seconds"]
      @keep_until = doc["keep_until"]
      @created = created.nil? ? doc["created"] : created
    end

    alias id task_id

    # The W3C traceparent the task was created under (its
    # "traceparent:<value>" tag; see TaskerCore::TraceContext), or nil.
    def traceparent
      TraceContext.from_tags(tags)
    end

    # The task's steps (TaskStep), in the core's order; fetched when the
    # document at hand has none (a handler's view).
    def steps
      @steps ||= (@doc["steps"] || reload.to_h["steps"] || []).map { |d| TaskStep.new(d, self) }
    end

    # The step called name (nil when there is none).
    def step(name)
      steps.find { |s| s.name == name.to_s }
    end

    # Whether TaskerCore.create_task created it (false: its idempotency key
    # named an existing task); nil when not known.
    def created?
      @created
    end

    # Every attempt of every step (Attempt), oldest first: the per-attempt
    # history, with each failed attempt's error. step: only that step's.
    def attempts(step = nil)
      @attempts ||= TaskerCore.attempts(task_id)
      step.nil? ? @attempts : @attempts.select { |a| a.step_name == step.to_s }
    end

    # The task as the core has it now (a new Task).
    def reload
      TaskerCore.task(task_id)
    end

    # Runs the task's steps with its template's task handler (see
    # BaseTaskHandler#handle); returns the orchestration result Hash.
    def handle
      TaskHandlerRegistry.new.find_handler_for_task(task_id).handle(task_id)
    end

    def complete?
      status == "complete"
    end

    # Ended for good without completing (a step failed permanently or ran
    # out of attempts).
    def error?
      status == "error"
    end

    alias failed? error?

    def cancelled?
      status == "cancelled"
    end

    # The protocol document.
    def to_h
      @doc
    end

    def [](key)
      key.to_s == "created" && !@created.nil? ? @created : @doc[key.to_s]
    end

    def inspect
      "#<TaskerCore::Task #{namespace}/#{name}@#{version} id=#{task_id} status=#{status}>"
    end
  end

  # The error of a failed attempt: {"class", "message", "backtrace", "kind",
  # "attempt", ...} as the worker reported it and the core stored it.
  class StepError
    attr_reader :message, :error_class, :backtrace, :kind, :attempt, :retry_after_seconds

    def initialize(doc)
      @doc = doc || {}
      @message = @doc["message"]
      @error_class = @doc["class"]
      @backtrace = @doc["backtrace"] || []
      @kind = @doc["kind"]
      @attempt = @doc["attempt"]
      @retry_after_seconds = @doc["retry_after_seconds"]
    end

    # "permanent" errors end the step's retries.
    def permanent?
      kind == "permanent"
    end

    def timed_out?
      @doc["timed_out"] == true || kind == "timeout"
    end

    def to_h
      @doc
    end

    def [](key)
      @doc[key.to_s]
    end

    def to_s
      error_class ? "#{error_class}: #{message}" : message.to_s
    end
  end

  # A step of a task as the core has it (TaskerCore.task(id).steps).
  class TaskStep
    attr_reader :step_id, :name, :status, :handler_class, :handler_config, :inputs, :results, :error, :attempts,
                :max_attempts, :retryable, :depends_on, :last_attempted_at, :next_retry_at, :completed_at, :task

    def initialize(doc, task = nil)
      @doc = doc
      @task = task
      @step_id = doc["step_id"]
      @name = doc["name"]
      @status = doc["status"]
      @handler_class = doc["handler_class"]
      @handler_config = doc["handler_config"] || {}
      @inputs = doc["inputs"] || {}
      @results = doc["results"]
      @error = doc["error"] ? StepError.new(doc["error"]) : nil
      @attempts = doc["attempts"].to_i
      @max_attempts = doc["max_attempts"]
      @retryable = doc["retryable"]
      @depends_on = doc["depends_on"] || []
      @last_attempted_at = doc["last_attempted_at"]
      @next_retry_at = doc["next_retry_at"]
      @completed_at = doc["completed_at"]
    end

    alias id step_id
    alias attempt_count attempts

    # This step's attempts (Attempt), oldest first, with their errors.
    def history
      @task ? @task.attempts(name) : []
    end

    def complete?
      status == "complete"
    end

    def error?
      status == "error"
    end

    def to_h
      @doc
    end

    def [](key)
      @doc[key.to_s]
    end

    def inspect
      "#<TaskerCore::TaskStep #{name} status=#{status} attempts=#{attempts}>"
    end
  end

  # One attempt of a step, from the step's transitions: when it was claimed
  # and by whom, how it ended, and its error when it failed.
  class Attempt
    attr_reader :step_id, :step_name, :number, :worker, :started_at, :finished_at, :status, :event, :reason, :error,
                :next_retry_at

    # Builds the attempts of a task from its "transitions" document.
    def self.from_transitions(doc)
      open = {}
      out = []
      (doc["steps"] || []).sort_by { |t| [t["step_id"].to_i, t["sort_key"].to_i] }.each do |t|
        meta = t["metadata"].is_a?(Hash) ? t["metadata"] : {}
        if t["event"] == "claim"
          a = new(t, meta)
          open[t["step_id"]] = a
          out << a
        elsif (a = open[t["step_id"]]) && (meta["attempt"].nil? || meta["attempt"] == a.number)
          a.finish(t, meta)
          open.delete(t["step_id"]) unless t["to_state"] == "in_progress"
        end
      end
      out.sort_by { |a| [a.started_at.to_s, a.step_id.to_i] }
    end

    def initialize(claim, meta)
      @step_id = claim["step_id"]
      @step_name = claim["step_name"]
      @number = meta["attempt"]
      @worker = claim["actor"]
      @started_at = claim["created_at"]
      @status = "in_progress"
      @event = claim["event"]
    end

    # Records the transition that ended (or moved) the attempt.
    def finish(transition, meta)
      @status = transition["to_state"]
      @event = transition["event"]
      @reason = transition["reason"]
      @finished_at = transition["created_at"]
      @error = meta["error"] ? StepError.new(meta["error"]) : nil
      @next_retry_at = meta["next_retry_at"]
    end

    # Still running (or its worker died and the lease has not expired yet).
    def running?
      status == "in_progress"
    end

    def succeeded?
      status == "complete"
    end

    def failed?
      !@error.nil? || %w[error waiting_for_retry].include?(status)
    end

    def to_h
      { "step_id" => step_id, "step_name" => step_name, "attempt" => number, "worker" => worker,
        "started_at" => started_at, "finished_at" => finished_at, "status" => status, "event" => event,
        "reason" => reason, "error" => error&.to_h, "next_retry_at" => next_retry_at }
    end

    def inspect
      "#<TaskerCore::Attempt #{step_name}##{number} #{status}#{error ? " #{error}" : ''}>"
    end
  end

  # One claimed attempt of a step.
  class Step
    attr_reader :step_id, :name, :handler_class, :handler_config, :inputs, :attempt, :max_attempts, :retryable,
                :timeout_seconds, :dependency_results, :depends_on, :lease_expires_at

    # The attempt's W3C traceparent from the core (nil when the task has no
    # trace context): the task's creator's, or the attempt's own span when
    # the process running it exports traces. The handler runs with it as
    # TaskerCore::TraceContext.current; send it on the handler's own HTTP
    # calls as the "traceparent" header.
    attr_reader :traceparent

    def initialize(doc)
      @doc = doc
      @step_id = doc["step_id"]
      @name = doc["name"]
      @handler_class = doc["handler_class"]
      @handler_config = doc["handler_config"] || {}
      @inputs = doc["inputs"] || {}
      @attempt = doc["attempt"]
      @max_attempts = doc["max_attempts"]
      @retryable = doc["retryable"]
      @timeout_seconds = doc["timeout_seconds"].to_i
      @dependency_results = doc["dependency_results"] || {}
      @depends_on = doc["depends_on"] || []
      @lease_expires_at = doc["lease_expires_at"]
      @traceparent = TraceContext.parse(doc["traceparent"])
    end

    alias id step_id
    alias input_data inputs
    alias config handler_config

    # The results this attempt will store. A handler of the reference design
    # sets them with step.results = ... (in #process or in a 3-argument
    # #process_results); nil until then.
    attr_reader :results

    def results=(value)
      @results_assigned = true
      @results = value
    end

    # Whether the handler assigned step.results during this attempt.
    def results_assigned?
      @results_assigned == true
    end

    # The results of the parent step called name (nil when it has none).
    def results_of(name)
      @dependency_results[name.to_s]
    end

    def last_attempt?
      !retryable || attempt >= max_attempts
    end

    def to_h
      @doc
    end
  end

  # What a step handler sees of the workflow around its step: the results
  # of the step's dependencies by name, and the other steps of the batch.
  class StepSequence
    attr_reader :steps, :dependency_results

    def initialize(step, batch)
      @dependency_results = step.dependency_results
      @steps = batch
    end

    # The results of the dependency called name.
    def [](name)
      @dependency_results[name.to_s]
    end

    alias results_of []

    # A dependency of the step as the reference design's
    # sequence.find_step_by_name(name).results reads it (nil when the step
    # has no dependency called name).
    def find_step_by_name(name)
      return nil unless @dependency_results.key?(name.to_s)

      DependencyStep.new(name.to_s, @dependency_results[name.to_s])
    end

    # A finished parent step: its name and results.
    DependencyStep = Struct.new(:name, :results)
  end

  # A lifecycle event of the core (task.enqueue, step.completed, ...).
  class Event
    attr_reader :name, :task_id, :step_id, :step_name, :time, :data

    def initialize(doc)
      @doc = doc
      @name = doc["name"]
      @task_id = doc["task_id"]
      @step_id = doc["step_id"]
      @step_name = doc["step_name"]
      @time = doc["time"]
      @data = doc["data"] || {}
      @data["task_id"] ||= @task_id
    end

    def to_h
      @doc
    end

    def [](key)
      @doc[key.to_s]
    end
  end
end
