# frozen_string_literal: true

require_relative "test_helper"

module RbTest
  # Fails its attempt in a way that is not a StandardError (config "mode").
  class HardFailHandler < TaskerCore::BaseStepHandler
    def process(_task, _sequence, _step)
      case config["mode"]
      when "stack" then recurse(0)
      when "exception" then raise Exception, "bare exception" # rubocop:disable Lint/RaiseException
      when "exit" then exit 3
      when "kill" then Thread.current.kill
      end
      { "unreachable" => true }
    end

    def recurse(depth)
      recurse(depth + 1) + 1
    end
  end

  # Raises Interrupt on its first attempt of each task, then succeeds.
  class InterruptOnceHandler < TaskerCore::BaseStepHandler
    @seen = {}
    @lock = Mutex.new
    class << self
      def first?(task_id)
        @lock.synchronize { !@seen.key?(task_id) && (@seen[task_id] = true) }
      end
    end

    def process(task, _sequence, step)
      Recorder.record(task_id: task.task_id, step: step.name, attempt: step.attempt)
      raise Interrupt if self.class.first?(task.task_id)

      { "ran" => true }
    end
  end

  # Returns a results value chosen by config "value".
  class ResultHandler < TaskerCore::BaseStepHandler
    def process(task, _sequence, step)
      Recorder.record(task_id: task.task_id, step: step.name, attempt: step.attempt)
      case config["value"]
      when "nan" then { "x" => Float::NAN }
      when "infinity" then { "list" => [1, -Float::INFINITY] }
      when "object" then { "obj" => Object.new }
      when "time" then { "at" => Time.at(0).utc }
      when "bad_message" then raise "caf\xE9 \xFF".b
      end
    end
  end

  # Records how many of its instances run at once.
  class ConcurrencyHandler < TaskerCore::BaseStepHandler
    @lock = Mutex.new
    @running = Hash.new(0)
    @peak = Hash.new(0)
    class << self
      def enter(task_id)
        @lock.synchronize do
          @running[task_id] += 1
          @peak[task_id] = [@peak[task_id], @running[task_id]].max
        end
      end

      def leave(task_id)
        @lock.synchronize { @running[task_id] -= 1 }
      end

      def peak(task_id)
        @lock.synchronize { @peak[task_id] }
      end
    end

    def process(task, _sequence, _step)
      self.class.enter(task.task_id)
      sleep 0.15
      {}
    ensure
      self.class.leave(task.task_id)
    end
  end

  # The reference design's forms (../shared/reference/tasker-core-ruby-bindings.md).
  class AssignsResultsHandler < TaskerCore::BaseStepHandler
    def process(_task, _sequence, step)
      step.results = { "assigned" => true }
      "the return value is not stored when step.results is assigned"
    end
  end

  class ThreeArgResultsHandler < TaskerCore::BaseStepHandler
    def process(_task, sequence, _step)
      { "saw" => sequence["assigns"] }
    end

    def process_results(step, process_output, initial_results)
      step.results = process_output.merge("initial_was_nil" => initial_results.nil?, "post" => true)
    end
  end

  class TwoArgResultsHandler < TaskerCore::BaseStepHandler
    def process(_task, _sequence, _step)
      { "n" => 1 }
    end

    def process_results(_step, output)
      output.merge("n" => output["n"] + 1)
    end
  end

  class FindStepHandler < TaskerCore::BaseStepHandler
    def process(_task, sequence, _step)
      found = sequence.find_step_by_name("two_args")
      { "name" => found.name, "results" => found.results, "missing" => sequence.find_step_by_name("nope") }
    end
  end
end

# Handlers that do not end like well-behaved Ruby: exceptions outside
# StandardError, interrupts, results JSON cannot carry; the template's
# max_parallel_steps; the reference design's handler signatures.
class RobustnessTest < RbTestCase
  def handle(task_id, **opts)
    Timeout.timeout(20) { TaskerCore::Coordinator.new(**opts).handle(task_id) }
  end

  def test_any_exception_fails_the_attempt_and_handle_returns
    task_id = RbTest.create_task("hard_fail")["task_id"]
    res = handle(task_id)
    assert_equal "error", res["status"], res.inspect
    steps = RbTest.steps(task_id)
    expect = { "stack" => ["SystemStackError", /stack level too deep/],
               "bare" => ["Exception", /bare exception/],
               "exit" => ["SystemExit", /exit/],
               "killed" => ["TaskerCore::HandlerLostError", /killed/] }
    expect.each do |name, (klass, msg)|
      err = steps[name]["error"]
      assert_equal "error", steps[name]["status"], name
      assert_equal 1, steps[name]["attempts"], name
      assert_equal klass, err["class"], name
      assert_match msg, err["message"], name
    end
    assert_match(/recurse/, steps["stack"]["error"]["backtrace"].first)
    refute_empty steps["bare"]["error"]["backtrace"]
  end

  def test_interrupt_from_a_handler_releases_the_attempt_and_is_reraised
    task_id = RbTest.create_task("interrupted")["task_id"]
    assert_raises(Interrupt) { handle(task_id) }
    steps = RbTest.steps(task_id)
    assert_equal "pending", steps["interrupt"]["status"]
    assert_equal 0, steps["interrupt"]["attempts"], "the interrupted attempt was counted"
    assert_nil steps["interrupt"]["error"]
    record = TaskerCore.client.queue_list["entries"].find { |e| e["task_id"] == task_id }
    refute_nil record, "the task was not handed back to the queue"
    assert_operator Time.parse(record["run_at"]), :<=, Time.now + 1

    res = RbTest.run_task(task_id)
    assert_equal "complete", res["status"]
    steps = RbTest.steps(task_id)
    assert_equal 1, steps["interrupt"]["attempts"]
    assert_equal "complete", steps["after"]["status"]
  end

  # As Sidekiq's hard shutdown does: Thread#raise into the job's thread
  # (Sidekiq::Shutdown is an Interrupt); and SystemExit (a trap calling exit).
  def test_interrupt_in_the_handle_thread_hands_the_task_back
    [Interrupt, SystemExit].each do |exc|
      RbTest::StuckHandler.started.clear # a token another run left
      task_id = RbTest.create_task("shutdown")["task_id"]
      handled = Thread.new do
        Thread.current.report_on_exception = false
        TaskerCore::BaseTaskHandler.new.handle(task_id)
      end
      assert_equal 1, Timeout.timeout(10) { RbTest::StuckHandler.started.pop }
      handled.raise(exc)
      assert_raises(exc) { Timeout.timeout(10) { handled.join } }
      steps = RbTest.steps(task_id)
      assert_equal "pending", steps["stuck"]["status"], exc.name
      assert_equal 0, steps["stuck"]["attempts"], "the attempt interrupted by #{exc} was counted"
      record = TaskerCore.client.queue_list["entries"].find { |e| e["task_id"] == task_id }
      refute_nil record, "the task was not handed back to the queue after #{exc}"
      RbTest::StuckHandler.unblock!
      assert_equal "complete", RbTest.run_task(task_id)["status"]
    end
  ensure
    # Leave no token of the stuck handler for another test's.
    RbTest::StuckHandler.gate.clear
    RbTest::StuckHandler.started.clear
  end

  def test_unserializable_results_fail_the_attempt_for_good
    task_id = RbTest.create_task("unserializable")["task_id"]
    res = handle(task_id, max_parallel_steps: nil) # all five at once: the first permanent failure stops claims
    assert_equal "error", res["status"], res.inspect
    steps = RbTest.steps(task_id)
    %w[nan infinity object].each do |name|
      assert_equal "error", steps[name]["status"], name
      assert_equal 1, steps[name]["attempts"], "#{name} was retried"
      assert_equal "permanent", steps[name]["error"]["kind"], name
      assert_match(/cannot be serialized as JSON/, steps[name]["error"]["message"], name)
    end
    assert_match(/NaN/, steps["nan"]["error"]["message"])
    assert_match(/Infinity/, steps["infinity"]["error"]["message"])
    assert_match(/Object/, steps["object"]["error"]["message"])
    assert_equal "complete", steps["fine"]["status"], "a Time is encoded as JSON encodes it"
    assert_equal({ "at" => "1970-01-01 00:00:00 UTC" }, steps["fine"]["results"])
    # An exception message that is not UTF-8 is recorded, scrubbed.
    assert_equal "RuntimeError", steps["bad_message"]["error"]["class"]
    assert_equal "retryable", steps["bad_message"]["error"]["kind"]
    assert_match(/\Acaf/, steps["bad_message"]["error"]["message"])
  end

  def test_template_max_parallel_steps_caps_the_handlers
    [[8, 2], [nil, 2], [1, 1]].each do |setting, want|
      task_id = RbTest.create_task("capped")["task_id"]
      res = handle(task_id, max_parallel_steps: setting)
      assert_equal "complete", res["status"]
      assert_equal 6, res["steps_executed"]
      assert_equal want, RbTest::ConcurrencyHandler.peak(task_id),
                   "max_parallel_steps setting #{setting.inspect} with the template's 2"
    end
  end

  def test_reference_design_handler_signatures
    task_id = RbTest.create_task("reference")["task_id"]
    res = handle(task_id)
    assert_equal "complete", res["status"], RbTest.steps(task_id).transform_values { |s| s["error"] }.inspect
    steps = RbTest.steps(task_id)
    assert_equal({ "assigned" => true }, steps["assigns"]["results"])
    assert_equal({ "saw" => { "assigned" => true }, "initial_was_nil" => true, "post" => true },
                 steps["three_args"]["results"])
    assert_equal({ "n" => 2 }, steps["two_args"]["results"])
    assert_equal({ "name" => "two_args", "results" => { "n" => 2 }, "missing" => nil }, steps["reads"]["results"])
  end
end
