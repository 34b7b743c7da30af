# frozen_string_literal: true

require_relative "test_helper"

module RbTest
  # Lists the numbers 1..context["n"].
  class ListItemsHandler < TaskerCore::BaseStepHandler
    def process(task, _sequence, _step)
      { "items" => (1..task.context["n"].to_i).to_a }
    end
  end

  # Doubles its fan-out item (inputs item and index).
  class DoubleItemHandler < TaskerCore::BaseStepHandler
    def process(task, _sequence, step)
      Recorder.record(task_id: task.task_id, step: step.name)
      { "double" => step.inputs["item"] * 2, "index" => step.inputs["index"] }
    end
  end

  # Sums the doubles the fan-out collected.
  class SumDoublesHandler < TaskerCore::BaseStepHandler
    def process(_task, _sequence, step)
      { "sum" => step.dependency_results["each"].sum { |r| r["double"] } }
    end
  end
end

# Dynamic fan-out driven from Ruby: the core expands the fan_out step into
# one step per item, the Ruby handlers run them, and the step after the
# fan-out receives their results in item order.
class FanOutTest < RbTestCase
  def test_fan_out_children_run_in_ruby
    task = RbTest.create_task("fanout", context: { "n" => 7 })
    res = RbTest.run_task(task["task_id"])
    assert_equal "complete", res["status"]
    steps = RbTest.steps(task["task_id"])
    assert_equal 10, steps.size, "list, each, gather and 7 children"
    expected = (1..7).map { |i| { "double" => i * 2, "index" => i - 1 } }
    assert_equal expected, steps["each"]["results"]
    assert_equal 56, steps["gather"]["results"]["sum"]
    ran = RbTest::Recorder.calls(task["task_id"]).map { |c| c[:step] }.sort
    assert_equal (0..6).map { |i| "each[#{i}]" }.sort, ran
  end

  def test_empty_fan_out_completes_with_an_empty_list
    task = RbTest.create_task("fanout", context: { "n" => 0 })
    res = RbTest.run_task(task["task_id"])
    assert_equal "complete", res["status"]
    steps = RbTest.steps(task["task_id"])
    assert_equal [], steps["each"]["results"]
    assert_equal 0, steps["gather"]["results"]["sum"]
    assert_equal 3, steps.size
  end
end
