# frozen_string_literal: true

require "delegate"
require_relative "test_helper"

# Workflow shapes, retries and failures with Ruby handlers, on the transport
# and database the environment selects (see test_helper.rb).
class WorkflowTest < RbTestCase
  def assert_paths(task_id, expected)
    steps = RbTest.steps(task_id)
    expected.each do |name, path|
      assert_equal "complete", steps[name]["status"], "step #{name}"
      assert_equal path, steps[name]["results"]["path"], "path of #{name}"
    end
  end

  def test_linear
    task = RbTest.create_task("linear", context: { "n" => 1 })
    assert task["created"]
    res = RbTest.run_task(task["task_id"])
    assert_equal "complete", res["status"]
    assert_equal "complete", res["outcome"]
    assert_equal 4, res["steps_executed"]
    assert_paths(task["task_id"], "d" => %w[a b c d])
    assert_equal %w[a b c d], RbTest::Recorder.calls(task["task_id"]).map { |c| c[:step] }
  end

  def test_diamond
    task = RbTest.create_task("diamond")
    res = RbTest.run_task(task["task_id"])
    assert_equal "complete", res["status"]
    steps = RbTest.steps(task["task_id"])
    assert_equal %w[b c], steps["d"]["results"]["deps"]
    order = RbTest::Recorder.calls(task["task_id"]).map { |c| c[:step] }
    assert_equal "a", order.first
    assert_equal "d", order.last
  end

  def test_tree
    task = RbTest.create_task("tree")
    res = RbTest.run_task(task["task_id"])
    assert_equal "complete", res["status"]
    assert_equal 7, res["steps_executed"]
    assert_paths(task["task_id"], "ll" => %w[root l ll], "rr" => %w[root r rr], "lr" => %w[root l lr])
  end

  def test_mixed_dag
    task = RbTest.create_task("mixed")
    res = RbTest.run_task(task["task_id"])
    assert_equal "complete", res["status"]
    steps = RbTest.steps(task["task_id"])
    assert_equal %w[c d], steps["e"]["results"]["deps"]
    assert_equal %w[a b], steps["d"]["results"]["deps"]
    assert_equal({}, steps["f"]["results"]) # tasker:noop ran in Ruby
    order = RbTest::Recorder.calls(task["task_id"]).map { |c| c[:step] }
    assert_operator order.index("e"), :>, order.index("c")
    assert_operator order.index("e"), :>, order.index("d")
  end

  def test_handlers_of_one_batch_overlap_in_time
    task = RbTest.create_task("parallel")
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    res = RbTest.run_task(task["task_id"])
    elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
    assert_equal "complete", res["status"]
    calls = RbTest::Recorder.calls(task["task_id"])
    assert_equal 4, calls.size
    # Every pair of handlers overlapped: each started before the other ended.
    calls.combination(2).each do |x, y|
      assert x[:start] < y[:finish] && y[:start] < x[:finish], "#{x[:step]} and #{y[:step]} did not overlap"
    end
    assert_operator elapsed, :<, 1.2, "4 handlers of 0.4 s took #{elapsed.round(2)} s: not concurrent"
  end

  # Counts the calls a Coordinator makes through the real client.
  class CountingClient < SimpleDelegator
    attr_reader :calls

    def initialize(client)
      super
      @calls = Hash.new(0)
    end

    %i[claim_steps report_results finalize].each do |m|
      define_method(m) do |*args, **kw|
        @calls[m] += 1
        __getobj__.public_send(m, *args, **kw)
      end
    end
  end

  # Four independent steps finishing 0.3 s apart: a report each (at least
  # three, should two land together). The first claim took all four (full),
  # so the loop claims once more after the first report; that claim comes
  # back empty (short) and no report unlocks a step (none has children), so
  # there is no third claim. (Claiming after every report would make one
  # claim per report.)
  def test_no_claim_after_a_short_claim_until_a_report_unlocks_a_step
    task = RbTest.create_task("staggered")
    client = CountingClient.new(TaskerCore.client)
    res = TaskerCore::Coordinator.new(client: client, max_parallel_steps: 4).handle(task["task_id"])
    assert_equal "complete", res["status"]
    assert_equal 4, res["steps_executed"]
    assert_operator client.calls[:report_results], :>=, 3
    assert_equal 2, client.calls[:claim_steps]
    assert_equal 0, client.calls[:finalize], "the last report finalizes"
  end

  def test_fail_n_times_with_retryable_error
    task = RbTest.create_task("flaky")
    res = RbTest.run_task(task["task_id"])
    assert_equal "complete", res["status"]
    steps = RbTest.steps(task["task_id"])
    assert_equal 3, steps["flaky"]["attempts"]
    assert_equal({ "succeeded_on" => 3 }, steps["flaky"]["results"])
    calls = RbTest::Recorder.calls(task["task_id"]).select { |c| c[:step] == "flaky" }
    assert_equal [1, 2, 3], calls.map { |c| c[:attempt] }
    # retry_after: 1 is honoured between attempts.
    calls.each_cons(2) { |x, y| assert_operator y[:at] - x[:at], :>=, 0.9 }
    assert_equal "complete", steps["after"]["status"]
  end

  def test_retry_viable_result_between_attempts
    task = RbTest.create_task("flaky")
    res = TaskerCore::BaseTaskHandler.new.handle(task["task_id"])
    assert_equal "retry_viable", res["outcome"]
    assert_equal "waiting_for_retry", res["status"]
    refute res["finalized"]
    assert res["next_run_at"]
    RbTest.run_task(task["task_id"])
  end

  def test_permanent_error_fails_the_task_at_once
    task = RbTest.create_task("permanent")
    res = RbTest.run_task(task["task_id"])
    assert_equal "error", res["status"]
    assert_equal "failed", res["outcome"]
    steps = RbTest.steps(task["task_id"])
    assert_equal "error", steps["decline"]["status"]
    assert_equal 1, steps["decline"]["attempts"]
    assert_equal "permanent", steps["decline"]["error"]["kind"]
    assert_equal "card declined", steps["decline"]["error"]["message"]
    assert_equal "pending", steps["never"]["status"]
    assert_equal 1, RbTest::Recorder.calls(task["task_id"]).size
  end

  def test_exception_is_recorded_with_class_message_and_backtrace
    task = RbTest.create_task("exception")
    res = RbTest.run_task(task["task_id"])
    assert_equal "error", res["status"]
    err = RbTest.steps(task["task_id"])["boom"]["error"]
    assert_equal "RbTest::BoomError", err["class"]
    assert_equal "kaboom", err["message"]
    assert_match(/in `explode'/, err["backtrace"].first)
    assert_equal 1, err["attempt"]
  end

  def test_handler_class_lookup_and_registry
    reg = TaskerCore::TaskHandlerRegistry.new
    found = reg.find_handler_for_task_request(TaskerCore::TaskRequest.new(namespace: "rbtest", name: "linear"))
    assert found["found"]
    assert_equal "RbTest::LinearTaskHandler", found["ruby_class_name"]
    assert_match(/name: linear/, found["yaml_template"])
    assert_equal "1.0.0", found["version"]
    assert_instance_of RbTest::LinearTaskHandler, reg.handler_instance(found)

    miss = reg.find_handler_for_task_request(TaskerCore::TaskRequest.new(namespace: "rbtest", name: "nope"))
    refute miss["found"]
    assert_equal "not_found", miss["error"]["code"]

    task = RbTest.create_task("linear")
    assert_instance_of RbTest::LinearTaskHandler, reg.find_handler_for_task(task["task_id"])
  end

  def test_core_errors_are_distinct_classes
    assert_raises(TaskerCore::NotFoundError) { TaskerCore.client.task(987_654_321) }
    assert_raises(TaskerCore::NotFoundError) { RbTest.create_task("no_such_template") }
    e = assert_raises(TaskerCore::InvalidContextError) { RbTest.create_task("api", context: { "url" => 5 }) }
    assert_equal "invalid_context", e.code
    assert_raises(TaskerCore::InvalidRequestError) { TaskerCore.client.call("no_such_method") }
    assert_raises(TaskerCore::InvalidRequestError) { TaskerCore.client.call("task", { "task_id" => 1, "bogus" => 1 }) }
    task = RbTest.create_task("linear")
    TaskerCore.client.cancel_task(task["task_id"], actor: "test")
    assert_raises(TaskerCore::InvalidTransitionError) { TaskerCore.client.cancel_task(task["task_id"]) }
    assert_operator TaskerCore::NotFoundError, :<, TaskerCore::CoreError
  end

  def test_idempotency_key_returns_the_existing_task
    a = RbTest.create_task("linear", idempotency_key: "key-#{SecureRandom.hex(4)}")
    b = RbTest.create_task("linear", idempotency_key: a["idempotency_key"])
    assert a["created"]
    refute b["created"]
    assert_equal a["task_id"], b["task_id"]
  end

  def test_repeated_reports_are_discarded
    task = RbTest.create_task("linear")
    c = TaskerCore.client
    owner = "test-#{SecureRandom.hex(3)}"
    claim = c.claim_steps(task["task_id"], owner: owner)
    step = claim["steps"].first
    result = { "step_id" => step["step_id"], "attempt" => step["attempt"], "success" => true, "results" => { "path" => ["a"] } }
    assert_equal "recorded", c.report_results(task["task_id"], owner: owner, results: [result])["results"][0]["status"]
    assert_equal "discarded", c.report_results(task["task_id"], owner: owner, results: [result])["results"][0]["status"]
    RbTest.run_task(task["task_id"])
  end
end
