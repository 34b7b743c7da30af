# frozen_string_literal: true

require_relative "test_helper"

# Shared rate limits reach Ruby workers through the pull API: a Ruby
# handler's RetryableError(retry_after:) blocks the step's limit for every
# task, and a claim hands out no step of a blocked limit (it waits, its
# attempt not counted).
class RateLimitTest < RbTestCase
  def test_retry_after_from_ruby_blocks_the_limit_for_other_tasks
    told = RbTest.create_task("rate_told")
    res = TaskerCore::BaseTaskHandler.new.handle(told["task_id"])
    assert_equal "waiting_for_retry", res["status"]
    failed_at = RbTest::Recorder.calls(told["task_id"]).first[:at]

    other = RbTest.create_task("rate_other")
    res = TaskerCore::BaseTaskHandler.new.handle(other["task_id"])
    refute res["finalized"], "the other task's step waits for the block: #{res}"
    step = RbTest.steps(other["task_id"])["call"]
    assert_equal "waiting_for_retry", step["status"]
    assert_equal 0, step["attempts"], "a throttled claim does not count an attempt"

    assert_equal "complete", RbTest.run_task(other["task_id"])["status"]
    assert_equal "complete", RbTest.run_task(told["task_id"])["status"]
    calls = RbTest::Recorder.calls(told["task_id"])
    assert_equal [1, 2], calls.map { |c| c[:attempt] }
    assert_operator calls[1][:at] - failed_at, :>=, 0.9
  end
end
