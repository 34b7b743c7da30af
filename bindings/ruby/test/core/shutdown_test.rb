# frozen_string_literal: true

require_relative "test_helper"

# TaskerCore.shutdown! while handle runs: finished handlers are reported, the
# unfinished step is released (pending, attempt not counted) and the task is
# yielded back to the queue, due now.
class ShutdownTest < RbTestCase
  def teardown
    TaskerCore.cancel_shutdown!
    TaskerCore.config.shutdown_grace = 8
  end

  def test_shutdown_releases_unfinished_steps_and_yields_the_task
    TaskerCore.config.shutdown_grace = 0.5
    task_id = RbTest.create_task("shutdown")["task_id"]
    handled = Thread.new { TaskerCore::BaseTaskHandler.new.handle(task_id) }
    assert_equal 1, Timeout.timeout(10) { RbTest::StuckHandler.started.pop }
    sleep 0.2 # "quick" finishes meanwhile
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    TaskerCore.shutdown!
    res = Timeout.timeout(10) { handled.value }
    waited = Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0

    assert_equal "yielded", res["outcome"], res.inspect
    assert_equal "pending", res["status"]
    assert_equal false, res["finalized"]
    assert_operator waited, :>=, 0.45, "handle did not give the stuck handler its grace"
    assert_operator waited, :<, 5

    steps = RbTest.steps(task_id)
    assert_equal "complete", steps["quick"]["status"], "the handler that finished was not reported"
    assert_equal "pending", steps["stuck"]["status"]
    assert_equal 0, steps["stuck"]["attempts"], "the released attempt was counted"
    assert_nil steps["stuck"]["error"]
    assert_equal "pending", steps["last"]["status"]
    assert_equal 0, steps["last"]["attempts"], "a step was claimed after shutdown!"
    assert_equal "pending", TaskerCore.client.task(task_id)["task"]["status"]
    record = TaskerCore.client.queue_list["entries"].find { |e| e["task_id"] == task_id }
    refute_nil record, "the yielded task has no queue record"
    assert_equal "reenqueue", record["operation"]
    assert_operator Time.parse(record["run_at"]), :<=, Time.now + 1, "the task is not due now"

    # A handle started while shutting down yields at once.
    early = TaskerCore::BaseTaskHandler.new.handle(task_id)
    assert_equal "yielded", early["outcome"], early.inspect
    assert_equal 0, early["steps_executed"]
    assert_equal 0, RbTest.steps(task_id)["stuck"]["attempts"]

    # After the restart the released step runs as attempt 1.
    TaskerCore.cancel_shutdown!
    RbTest::StuckHandler.unblock!
    res = RbTest.run_task(task_id)
    assert_equal "complete", res["status"]
    assert_equal 1, RbTest.steps(task_id)["stuck"]["attempts"]
  end
end
