# frozen_string_literal: true

require_relative "test_helper"

# TaskerCore.create_tasks: many tasks in one call, each request with its own
# outcome, on whichever transport the run uses (tasker_create_tasks embedded,
# POST /v1/tasks/batch over the socket).
class BatchTest < RbTestCase
  def test_create_tasks_gives_each_request_its_outcome
    key = "batch-#{SecureRandom.hex(4)}"
    existing = TaskerCore.create_task("rbtest/linear", { "n" => 0 }, idempotency_key: "#{key}-old")
    results = TaskerCore.create_tasks([
      ["rbtest/linear", { "n" => 1 }, { idempotency_key: "#{key}-1" }],
      { template: "rbtest/api", context: { "url" => 5 } },
      { "namespace" => "rbtest", "name" => "nope" },
      TaskerCore::TaskRequest.new(namespace: "rbtest", name: "linear", context: { "n" => 3 },
                                  idempotency_key: "#{key}-old"),
      ["rbtest/linear", { "n" => 4 }, { idempotency_key: "#{key}-1" }],
      { template: "rbtest/linear@1.0.0", context: { "n" => 5 }, initiator: "batch-test" }
    ])
    assert_equal [0, 1, 2, 3, 4, 5], results.map(&:index)
    assert_equal %w[created error error existing existing created], results.map(&:status)
    assert results[0].ok?
    assert results[0].created?
    assert_instance_of TaskerCore::Task, results[0].task
    assert results[0].task.created?
    assert_equal({ "n" => 1 }, results[0].task.context)
    assert_instance_of TaskerCore::InvalidContextError, results[1].error
    assert_instance_of TaskerCore::NotFoundError, results[2].error
    assert results[2].error?
    assert_nil results[2].task
    assert_equal existing.id, results[3].task.id
    refute results[3].task.created?
    assert_equal results[0].task.id, results[4].task.id
    assert_equal "batch-test", results[5].task.initiator

    task = results[5].task.reload
    assert_equal %w[a b c d], task.steps.map(&:name)
    assert_equal "complete", task.handle["status"]
  end

  def test_create_tasks_whole_batch_errors
    assert_equal [], TaskerCore.create_tasks([])
    assert_raises(ArgumentError) { TaskerCore.create_tasks([42]) }
    too_many = Array.new(5001) { ["rbtest/linear", { "n" => 1 }] }
    err = assert_raises(TaskerCore::Error) { TaskerCore.create_tasks(too_many) }
    assert_equal "payload_too_large", err.code
  end
end
