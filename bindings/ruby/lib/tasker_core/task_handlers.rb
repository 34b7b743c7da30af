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
    # Handler threads when neither the template nor the setting says.
    DEFAULT_PARALLEL = 8

    # The state of one #handle call.
    Run = Struct.new(:task_id, :pool, :inflight, :max, :pending)

    # max_parallel_steps: nil (the default) runs up to the template's
    # max_parallel_steps handlers at once; a number can only lower that.
    def initialize(client: TaskerCore.client, owner: TaskerCore.config.owner,
                   max_parallel_steps: TaskerCore.config.max_parallel_steps)
      @client = client
      @owner = owner
      @cap = max_parallel_steps.nil? ? nil : [max_parallel_steps.to_i, 1].max
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
    #
    # A SignalException (Interrupt, Sidekiq::Shutdown), raised in this
    # thread or by a handler, hands the task back at once (finished results
    # reported, the other attempts released, the task yielded) and is then
    # re-raised; so does a SystemExit raised in this thread (a handler's
    # own `exit` only fails its attempt).
    def handle(task_id)
      task_id = Integer(task_id)
      return yield_back(task_id, 0) if TaskerCore.shutting_down?

      run = Run.new(task_id, WorkerPool.new(@cap || DEFAULT_PARALLEL), {}, @cap, [])
      executed = 0
      idle = 0
      loop do
        n, finalized = drive(run)
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
    rescue SignalException, SystemExit => e
      # SystemExit: the process exits (a signal trap calling exit) with
      # this thread inside handle: hand back as for an interrupt.
      hand_back(run, e) if run
      raise
    ensure
      run&.pool&.shutdown
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
    def drive(run)
      task_id = run.task_id
      pool = run.pool
      inflight = run.inflight
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
        if !stopping && claim_more && want_claim && (run.max.nil? || inflight.size < run.max)
          # Before the first claim the template's cap is unknown: limit 0
          # lets the core claim up to the task's max_parallel_steps.
          limit = run.max.nil? ? 0 : run.max - inflight.size
          # An interrupt waits until the claimed steps are in inflight, so
          # that the hand-back releases them.
          begin
            task, batch, template_max = critical do
              claim = @client.claim_steps(task_id, owner: @owner, limit: limit)
              t = Task.new(claim["task"])
              steps = claim["steps"].map { |doc| Step.new(doc) }
              steps.each { |step| inflight[step.step_id] = step }
              [t, steps, t.max_parallel_steps.to_i]
            end
          rescue ConnectionError, DatabaseError, TimeoutError => e
            # With attempts running, a failed claim must not lose their
            # results: finish and report them first (reporting is safe to
            # repeat), and claim again after the next report, as the Go
            # coordinator does. With nothing running, the error is the
            # caller's (the job is retried).
            raise if inflight.empty?

            TaskerCore.config.logger&.warn("tasker_core: claim steps of task #{task_id} failed (#{e.class}: " \
                                           "#{e.message}); reporting the #{inflight.size} running first")
            want_claim = false
            next
          end
          want_claim = false
          run.max = template_max.positive? ? [@cap, template_max].compact.min : (@cap || DEFAULT_PARALLEL)
          pool.size = run.max
          batch.each { |step| pool.submit(step) { StepHandlers.run(task, step, batch) } }
          executed += batch.size
          asked = limit.positive? ? limit : [template_max, 1].max
          drained = batch.size < asked
        end
        break if inflight.empty?

        now = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        beat_at ||= now + @beat
        # Wake up at least every SHUTDOWN_CHECK seconds to notice shutdown!.
        wait = (beat_at - now).clamp(0, SHUTDOWN_CHECK)
        if stopping
          left = TaskerCore.shutdown_at + TaskerCore.config.shutdown_grace.to_f - now
          if left <= 0
            release(run)
            break
          end
          wait = [wait, left].min
        end
        results = pool.take(wait)
        if results.empty?
          # A handler thread that ended without a result (killed) is
          # reported as a failure, never heartbeated.
          next if pool.reap.positive?

          if Process.clock_gettime(Process::CLOCK_MONOTONIC) >= beat_at
            # The heartbeat: nothing finished for a third of the lease.
            @client.extend_leases(inflight.keys, owner: @owner)
            beat_at = nil
          end
          next
        end
        beat_at = nil
        results.each { |r| inflight.delete(r["step_id"]) }
        interrupt = nil
        results.each { |r| interrupt ||= r.delete(:interrupt) }
        if interrupt
          # A handler raised Interrupt / SignalException: hand the task back.
          run.pending = results
          raise interrupt
        end
        last = inflight.empty?
        report = send_report(task_id, results, last)
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

    # Runs the block with interrupts (Interrupt, Sidekiq::Shutdown raised
    # into this thread) held until it ends: a claim or report the core
    # carried out is never lost to the hand-back.
    def critical(&block)
      Thread.handle_interrupt(SignalException => :never, SystemExit => :never, &block)
    end

    # report_results; a results document JSON cannot encode (a last resort:
    # StepHandlers checks results first) turns the attempts it cannot
    # encode into permanent failures instead of leaving them leased.
    def send_report(task_id, results, finalize)
      critical { @client.report_results(task_id, owner: @owner, results: results, finalize: finalize) }
    rescue JSON::JSONError, EncodingError => e
      fixed = results.map do |r|
        JSON.generate(r)
        r
      rescue JSON::JSONError, EncodingError => re
        { "success" => false, "step_id" => r["step_id"], "attempt" => r["attempt"],
          "error" => { "message" => "results cannot be serialized as JSON: #{re.message}",
                       "class" => "TaskerCore::SerializationError", "backtrace" => [], "permanent" => true } }
      end
      raise e if fixed == results

      critical { @client.report_results(task_id, owner: @owner, results: fixed, finalize: finalize) }
    end

    # The grace is over: report what finished meanwhile, stop the other
    # handlers and give their attempts back.
    def release(run)
      done = run.pool.take(0)
      done.each { |r| run.inflight.delete(r["step_id"]) }
      run.pool.kill
      done.each { |r| r.delete(:interrupt) }
      results = done + run.inflight.values.map { |st| release_doc(st) }
      @client.report_results(run.task_id, owner: @owner, results: results) unless results.empty?
      run.inflight.clear
    end

    def release_doc(step)
      { "step_id" => step.step_id, "attempt" => step.attempt, "release" => true }
    end

    # An interrupt: report what finished, release the attempts still
    # running (their handlers are stopped), and yield the task to the
    # queue, due now, so that another worker takes it. Errors of the core
    # are logged: the interrupt is re-raised either way.
    def hand_back(run, exc)
      done = run.pending + run.pool.take(0)
      run.pending = []
      run.pool.kill
      done.each do |r|
        r.delete(:interrupt)
        run.inflight.delete(r["step_id"])
      end
      results = done + run.inflight.values.map { |st| release_doc(st) }
      run.inflight.clear
      @client.report_results(run.task_id, owner: @owner, results: results) unless results.empty?
      @client.yield_task(run.task_id, owner: @owner, reason: "Ruby worker interrupted (#{exc.class})")
    rescue StandardError => e
      TaskerCore.config.logger&.warn("tasker_core: handing task #{run.task_id} back after #{exc.class} failed: " \
                                     "#{e.class}: #{e.message}")
    end
  end

  # Threads that run step handlers, started on demand up to a limit and
  # stopped by #shutdown. Results are collected in order of completion.
  # Every submitted job yields exactly one result: a thread that is killed
  # (or dies) under its job posts a failure for the job's step.
  class WorkerPool
    Job = Struct.new(:step, :block)

    def initialize(size)
      @size = [size.to_i, 1].max
      @jobs = Queue.new
      @threads = []
      @lock = Mutex.new
      @done = ConditionVariable.new
      @results = []
      # Jobs submitted and not finished; the job each thread runs.
      @pending = 0
      @current = {}
      # Bumped by #kill: results of killed threads are dropped.
      @generation = 0
    end

    # How many threads may run at once (raised or lowered between jobs).
    def size=(value)
      @lock.synchronize do
        @size = [value.to_i, 1].max
        spawn_locked
      end
    end

    def submit(step = nil, &block)
      @lock.synchronize do
        @pending += 1
        @jobs << Job.new(step, block)
        spawn_locked
      end
    end

    # Waits up to timeout seconds for at least one result, then returns all
    # results available ([] on timeout).
    def take(timeout)
      @lock.synchronize do
        @done.wait(@lock, timeout) if @results.empty? && timeout.positive?
        out = @results
        @results = []
        out
      end
    end

    # Posts a failure for each job whose thread is gone without a result;
    # returns how many.
    def reap
      @lock.synchronize do
        dead = @current.reject { |t, _| t.alive? }
        dead.each do |t, job|
          @current.delete(t)
          @threads.delete(t)
          @pending -= 1
          @results << StepHandlers.lost(job.step, "the step handler's thread ended without a result")
        end
        unless dead.empty?
          spawn_locked
          @done.signal
        end
        dead.size
      end
    end

    # Stops the threads at once, whatever they run (their results are
    # dropped); the pool can take jobs again afterwards.
    def kill
      threads = @lock.synchronize do
        @generation += 1
        @pending = 0
        @current.clear
        @jobs.clear
        t = @threads
        @threads = []
        t
      end
      threads.each(&:kill)
      threads.each { |t| t.join(1) }
      @lock.synchronize { @results = [] }
    end

    def shutdown
      threads = @lock.synchronize do
        @generation += 1
        t = @threads
        @threads = []
        t
      end
      threads.size.times { @jobs << nil }
      threads.each(&:join)
    end

    private

    # Starts threads while jobs wait for one and the limit allows.
    def spawn_locked
      while @threads.size < @size && @threads.size < @pending
        gen = @generation
        @threads << Thread.new { work(gen) }
      end
    end

    def work(gen)
      while (job = @jobs.pop)
        @lock.synchronize { @current[Thread.current] = job if gen == @generation }
        result = nil
        begin
          result = job.block.call
        rescue Exception => e # rubocop:disable Lint/RescueException -- never lose a job's result
          result = StepHandlers.failure(e).merge("step_id" => job.step&.step_id, "attempt" => job.step&.attempt)
        ensure
          result ||= StepHandlers.lost(job.step, "the step handler's thread was killed before it returned a result")
          finish(result, gen)
        end
      end
    ensure
      @lock.synchronize do
        @current.delete(Thread.current)
        if gen == @generation && @threads.delete(Thread.current)
          spawn_locked # died under a job: others may wait for a thread
        end
      end
    end

    def finish(result, gen)
      @lock.synchronize do
        return unless gen == @generation && @current.delete(Thread.current)

        @pending -= 1
        @results << result
        @done.signal
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
