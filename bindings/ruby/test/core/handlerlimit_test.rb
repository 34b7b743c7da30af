# frozen_string_literal: true

require_relative "test_helper"

module RbTest
  # Sleeps config["seconds"] and records when it ran (its class is limited
  # by handler_limited.yaml).
  class LimitedHandler < TaskerCore::BaseStepHandler
    def process(task, _sequence, step)
      t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      sleep config["seconds"].to_f
      Recorder.record(task_id: task.task_id, step: step.name, attempt: step.attempt, start: t0,
                      finish: Process.clock_gettime(Process::CLOCK_MONOTONIC))
      { "ran" => step.name }
    end
  end
end

# Handler-class limits reach Ruby workers through the pull API: a claim
# hands out only the steps of a limited class that have a slot; the others
# wait (their attempt not counted) and explain says why; a reported result
# frees the slot.
class HandlerLimitTest < RbTestCase
  def reasons(task_id)
    TaskerCore.client.explain(task_id)["steps"].to_h { |s| [s["name"], s["reason"]] }
  end

  def test_a_claim_gets_only_the_slots_of_a_limited_class
    task = RbTest.create_task("handler_limited")
    id = task["task_id"]
    claim = TaskerCore.client.claim_steps(id, owner: "rb-limit")
    names = claim["steps"].map { |s| s["name"] }.sort
    assert_equal 2, names.size, "one limited step and the free one: #{names}"
    assert_includes names, "free"
    waiting = (%w[a b] - names).first
    assert_equal "waiting: handler class RbTest::LimitedHandler at limit 1 (1 running)", reasons(id)[waiting]
    step = RbTest.steps(id)[waiting]
    assert_equal "waiting_for_retry", step["status"]
    assert_equal 0, step["attempts"], "a refused claim does not count an attempt"

    results = claim["steps"].map { |s| { "step_id" => s["step_id"], "attempt" => s["attempt"], "success" => true } }
    TaskerCore.client.report_results(id, owner: "rb-limit", results: results)
    assert_equal "complete", RbTest.run_task(id)["status"]
    assert_equal 1, RbTest.steps(id)[waiting]["attempts"]
  end

  def test_limited_steps_of_many_tasks_take_turns
    ids = Array.new(2) { RbTest.create_task("handler_limited")["task_id"] }
    threads = ids.map { |id| Thread.new { RbTest.run_task(id) } }
    assert_equal %w[complete complete], threads.map { |t| t.value["status"] }
    calls = ids.flat_map { |id| RbTest::Recorder.calls(id) }.select { |c| c[:start] }.sort_by { |c| c[:start] }
    assert_equal 4, calls.size
    calls.each_cons(2) do |x, y|
      assert_operator y[:start], :>=, x[:finish], "#{y[:step]} of task #{y[:task_id]} overlapped #{x[:step]}"
    end
  end
end

# Concurrency keys from Ruby: a task created from Ruby whose template
# declares `concurrency:` waits while another task of its key runs, and
# explain says why; it runs once the first finishes.
class ConcurrencyKeyTest < RbTestCase
  def test_a_second_task_of_a_key_waits_for_the_first
    first = TaskerCore.create_task("rbtest/keyed", { "account" => 7 })
    second = TaskerCore.create_task("rbtest/keyed", { "account" => 7 })
    other = TaskerCore.create_task("rbtest/keyed", { "account" => 8 })
    claim = TaskerCore.client.claim_steps(first.task_id, owner: "rb-key")
    assert_equal ["sync"], claim["steps"].map { |s| s["name"] }

    held = TaskerCore.client.claim_steps(second.task_id, owner: "rb-key")
    assert_empty held["steps"]
    assert_equal "waiting: concurrency key acct-7 at limit 1", held["reason"]
    why = TaskerCore.client.explain(second.task_id)["steps"].first["reason"]
    assert_equal "waiting: concurrency key acct-7 at limit 1 (1 running; policy queue)", why
    assert_equal "complete", RbTest.run_task(other.task_id)["status"], "another key is not held back"

    results = claim["steps"].map { |s| { "step_id" => s["step_id"], "attempt" => s["attempt"], "success" => true } }
    TaskerCore.client.report_results(first.task_id, owner: "rb-key", results: results, finalize: true)
    assert_equal "complete", TaskerCore.task(first.task_id).status
    assert_equal "complete", RbTest.run_task(second.task_id)["status"]
  end
end
