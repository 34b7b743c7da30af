# frozen_string_literal: true

require_relative "test_helper"

module RbTest
  # Returns the context's amount: the conditional steps read it.
  class AmountHandler < TaskerCore::BaseStepHandler
    def process(task, _sequence, _step)
      { "amount" => task.context["amount"] }
    end
  end
end

# Flow control driven from Ruby (docs/flow-control.md): conditional steps,
# deadlines and delayed tasks, with Ruby step handlers on either transport.
class FlowControlTest < RbTestCase
  # The core evaluates `when` before handing a step to the Ruby worker: the
  # false branch is skipped (its handler never runs) and counts as done.
  def test_conditional_steps_skip_the_false_branch
    big = RbTest.create_task("conditional", context: { "amount" => 5000 })
    small = RbTest.create_task("conditional", context: { "amount" => 10 })
    [big, small].each { |t| assert_equal "complete", RbTest.run_task(t["task_id"])["status"] }

    big_steps = RbTest.steps(big["task_id"])
    assert_equal "complete", big_steps["manual_review"]["status"]
    assert_equal "skipped", big_steps["auto_approve"]["status"]
    assert_equal "complete", big_steps["notify"]["status"]
    small_steps = RbTest.steps(small["task_id"])
    assert_equal "skipped", small_steps["manual_review"]["status"]
    assert_equal "complete", small_steps["auto_approve"]["status"]

    why = TaskerCore.client.explain(small["task_id"])
    review = why["steps"].find { |s| s["name"] == "manual_review" }
    assert_match(/skipped: when results\.check\.amount > 1000 is false/, review["reason"])
  end

  # A task past its timeout_seconds fails with the deadline as its reason,
  # the step after the slow one never runs.
  def test_deadline_fails_a_task_still_running
    task = RbTest.create_task("deadline")
    res = RbTest.run_task(task["task_id"], deadline: 60)
    assert_equal "error", res["status"]
    doc = TaskerCore.client.task(task["task_id"])["task"]
    steps = doc["steps"].to_h { |s| [s["name"], s] }
    refute_equal "complete", steps["after"]["status"], "the step after the deadline never ran"
    trail = TaskerCore.client.transitions(task["task_id"])["task"]
    assert(trail.any? { |tr| tr["to_state"] == "error" && tr["reason"].to_s.include?("deadline exceeded") }, trail.inspect)
  end

  # A delayed task is written at once, pending, with run_at; explain says
  # until when it waits, and it runs once due.
  def test_delayed_task_waits_for_its_run_at
    created = Time.now
    task = RbTest.create_task("noop", delay_seconds: 1.5)
    doc = TaskerCore.client.task(task["task_id"])["task"]
    assert_equal "pending", doc["status"]
    run_at = Time.parse(doc["run_at"])
    assert_in_delta created + 1.5, run_at, 1.0

    why = TaskerCore.client.explain(task["task_id"])
    if Time.now < run_at # not yet due (always, unless the machine stalled)
      assert(why["steps"].all? { |s| s["reason"].start_with?("task is delayed until") }, why.inspect)
    end

    assert_equal "complete", RbTest.run_task(task["task_id"])["status"]

    assert_raises(TaskerCore::Error) { RbTest.create_task("noop", delay_seconds: 1, run_at: Time.now + 5) }
  end
end
