# frozen_string_literal: true

require "json"

module TaskerCore
  # A request for a new task (namespace/name/version of a template plus the
  # context and metadata).
  class TaskRequest
    FIELDS = %i[namespace name version context initiator source_system reason tags bypass_steps priority
                idempotency_key step_inputs].freeze
    attr_accessor(*FIELDS)

    def initialize(name:, namespace: "default", version: nil, context: {}, initiator: nil, source_system: nil,
                   reason: nil, tags: [], bypass_steps: [], priority: 0, idempotency_key: nil, step_inputs: nil)
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

  # The task a step handler works for (read-only).
  class Task
    attr_reader :task_id, :namespace, :name, :version, :status, :context, :priority, :tags, :initiator,
                :source_system, :reason, :max_parallel_steps

    def initialize(doc)
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
    end

    alias id task_id

    def to_h
      @doc
    end
  end

  # One claimed attempt of a step.
  class Step
    attr_reader :step_id, :name, :handler_class, :handler_config, :inputs, :attempt, :max_attempts, :retryable,
                :timeout_seconds, :dependency_results, :depends_on, :lease_expires_at

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
