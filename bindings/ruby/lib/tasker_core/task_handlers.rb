# frozen_string_literal: true

module TaskerCore
  # Runs the steps of one task in Ruby threads, driven by the core: claim a
  # batch, run it (up to max_parallel_steps at once), report results as
  # they arrive, claim again; when nothing is claimable and nothing runs,
  # ask the finalizer. Every decision is the core's.
  class Coordinator
    # How often #handle may loop on "continue" without claiming anything
    # before it gives up and returns the finalizer's answer.
    MAX_IDLE_CONTINUES = 50
    # How often (seconds) a waiting #handle checks TaskerCore.shutting_down?.
    SHUTDOWN_CHECK = 0.1

    def initialize(client: TaskerCore.client, owner: TaskerCore.config.owner,
                   max_parallel_steps: TaskerCore.config.max_parallel_steps)
      @client = client
      @owner = owner
      @max = [max_parallel_steps.to_i, 1].max
      @beat = [TaskerCore.step_lease_seconds / 3.0, 0.05].max
    end

    # Drives the task until the core finalizes it (or says to come back
    # later) and returns the finalizer's result Hash: "task_id", "status",
    # "outcome", "reason", "steps_executed", "next_run_at", "finalized".
    #
    # After TaskerCore.shutdown! it hands the task back instead: no more
    # claims, in-flight handlers get config.shutdown_grace seconds (counted
    # from shutdown!) to finish and are reported, the unfinished ones are
    # stopped and their steps released without counting the attempt, and
    # the task is yielded to the queue, due now (outcome "yielded").
    def handle(task_id)
      task_id = Integer(task_id)
      return yield_back(task_id, 0) if TaskerCore.shutting_down?

      pool = WorkerPool.new(@max)
      executed = 0
      idle = 0
      loop do
        n, finalized = drive(task_id, pool)
        executed += n
        res = finalized || @client.finalize(task_id, owner: @owner)
        if res["outcome"] == "continue"
          return yield_back(task_id, executed) if TaskerCore.shutting_down?

          idle = n.zero? ? idle + 1 : 0
          if idle < MAX_IDLE_CONTINUES
            sleep(0.01 * idle) if idle > 1
            next
          end
        end
        res["steps_executed"] = executed
        return res
      end
    ensure
      pool&.shutdown
    end

    private

    def yield_back(task_id, executed)
      res = @client.yield_task(task_id, owner: @owner, reason: "Ruby worker shutting down")
      res["steps_executed"] = executed
      res
    end

    # The claim -> run -> report loop; returns how many attempts it ran and,
    # when its last report settled the task, the finalizer's result (the
    # last report, with nothing left in flight, asks for the decision; a
    # "continue" sends the loop back to claiming).
    def drive(task_id, pool)
      inflight = {}
      executed = 0
      claim_more = true
      want_claim = true
      # drained: the last claim took fewer steps than it could, so claiming
      # again finds nothing until a report unlocks a step (the core says so)
      # or the finalizer says "continue".
      drained = false
      beat_at = nil
      loop do
        stopping = TaskerCore.shutting_down?
        if !stopping && claim_more && want_claim && inflight.size < @max
          limit = @max - inflight.size
          claim = @client.claim_steps(task_id, owner: @owner, limit: limit)
          want_claim = false
          task = Task.new(claim["task"])
          batch = claim["steps"].map { |doc| Step.new(doc) }
          batch.each do |step|
            inflight[step.step_id] = step
            pool.submit { StepHandlers.run(task, step, batch) }
          end
          executed += batch.size
          drained = batch.size < limit
        end
        break if inflight.empty?

        now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        beat_at ||= now + @beat
        # Wake up at least every SHUTDOWN_CHECK seconds to notice shutdown!.
        wait = (beat_at - now).clamp(0, SHUTDOWN_CHECK)
        if stopping
          left = TaskerCore.shutdown_at + TaskerCore.config.shutdown_grace.to_f - now
          if left <= 0
            release(task_id, inflight, pool)
            break
          end
          wait = [wait, left].min
        end
        results = pool.take(wait)
        if results.empty?
          if Process.clock_gettime(Process::CLOCK_MONOTONIC) >= beat_at
            # The heartbeat: nothing finished for a third of the lease.
            @client.extend_leases(inflight.keys, owner: @owner)
            beat_at = nil
          end
          next
        end
        beat_at = nil
        results.each { |r| inflight.delete(r["step_id"]) }
        last = inflight.empty?
        report = @client.report_results(task_id, owner: @owner, results: results, finalize: last)
        claim_more &&= report["claim_more"]
        drained = false if report.fetch("unlocks", true)
        want_claim = !drained
        finalized = report["final"] if last
        if finalized
          return [executed, finalized] unless finalized["outcome"] == "continue"

          claim_more = true # steps became ready after all (a failure never says continue)
          want_claim = true
        end
      end
      [executed, nil]
    end

    # The grace is over: report what finished meanwhile, stop the other
    # handlers and give their attempts back.
    def release(task_id, inflight, pool)
      done = pool.take(0)
      done.each { |r| inflight.delete(r["step_id"]) }
      pool.kill
      results = done + inflight.values.map { |st| { "step_id" => st.step_id, "attempt" => st.attempt, "release" => true } }
      @client.report_results(task_id, owner: @owner, results: results) unless results.empty?
      inflight.clear
    end
  end

  # Threads that run step handlers, started on demand up to a limit and
  # stopped by #shutdown. Results are collected in order of completion.
  class WorkerPool
    def initialize(size)
      @size = size
      @jobs = Queue.new
      @threads = []
      @idle = 0
      @lock = Mutex.new
      @done = ConditionVariable.new
      @results = []
    end

    def submit(&job)
      @lock.synchronize do
        if @idle.zero? && @threads.size < @size
          @threads << Thread.new { work }
        else
          @idle -= 1 if @idle.positive?
        end
      end
      @jobs << job
    end

    # Waits up to timeout seconds for at least one result, then returns all
    # results available ([] on timeout).
    def take(timeout)
      @lock.synchronize do
        @done.wait(@lock, timeout) if @results.empty?
        out = @results
        @results = []
        out
      end
    end

    # Stops the threads at once, whatever they run (their results are
    # dropped); the pool can take jobs again afterwards.
    def kill
      threads = @lock.synchronize { @threads.dup }
      threads.each(&:kill)
      threads.each { |t| t.join(1) }
      @lock.synchronize do
        @threads -= threads
        @idle = 0
        @results = []
      end
      @jobs.clear
    end

    def shutdown
      @threads.size.times { @jobs << nil }
      @threads.each(&:join)
      @threads.clear
    end

    private

    def work
      while (job = @jobs.pop)
        result = job.call
        @lock.synchronize do
          @results << result
          @idle += 1
          @done.signal
        end
      end
    end
  end

  # Base class of task handlers (the template's task_handler_class). A
  # subclass needs no code; it may override #handle or #initialize_task to
  # add behaviour around them.
  class BaseTaskHandler
    # The template's YAML (from the registry), when known.
    attr_reader :yaml_config

    def initialize(yaml_config = nil)
      @yaml_config = yaml_config
    end

    # Creates the task (validating the context against the template) and its
    # durable enqueue record; returns the task Hash ("task_id", "status",
    # "steps", ...) with "created" (false when the idempotency key existed).
    def initialize_task(task_request)
      res = TaskerCore.client.initialize_task(task_request)
      res["task"].merge("created" => res["created"])
    end

    # Runs the task's steps with their Ruby handlers until the core
    # finalizes it; returns the orchestration result Hash. After
    # TaskerCore.shutdown! it hands the task back to the queue instead
    # (outcome "yielded", see Coordinator#handle).
    def handle(task_id)
      Coordinator.new.handle(task_id)
    end
  end

  # Template lookup: which task handler class and YAML serve a request.
  class TaskHandlerRegistry
    def initialize(client: nil)
      @client = client
    end

    # {"found" => bool, "task_handler_class", "ruby_class_name", "yaml_template",
    #  "namespace", "name", "version", "template"}; a miss has "error".
    def find_handler_for_task_request(task_request)
      req = task_request.respond_to?(:to_h) ? task_request.to_h.transform_keys(&:to_s) : task_request
      find_handler(namespace: req["namespace"] || "default", name: req["name"], version: req["version"])
    end

    def find_handler(namespace:, name:, version: nil)
      res = client.find_handler(namespace: namespace, name: name, version: version)
      res["ruby_class_name"] = res["task_handler_class"] || (res["found"] ? "TaskerCore::BaseTaskHandler" : nil)
      res
    end

    # The handler instance for an existing task: its template's
    # task_handler_class when that constant exists, else BaseTaskHandler.
    def find_handler_for_task(task_id)
      t = client.task(task_id)["task"]
      res = find_handler(namespace: t["namespace"], name: t["name"], version: t["version"])
      handler_instance(res)
    end

    # Instantiates the handler class a lookup named.
    def handler_instance(result)
      klass = BaseTaskHandler
      if result["found"] && result["task_handler_class"] && !result["task_handler_class"].empty?
        begin
          klass = Object.const_get(result["task_handler_class"])
        rescue NameError
          klass = BaseTaskHandler
        end
      end
      klass.new(result["yaml_template"])
    end

    private

    def client
      @client || TaskerCore.client
    end
  end
end
