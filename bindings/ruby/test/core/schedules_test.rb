# frozen_string_literal: true

require_relative "test_helper"

# TaskerCore.schedules lists the templates' cron schedules with their next
# runs (the RPC method "schedules" on both transports).
class SchedulesTest < RbTestCase
  def test_schedules_with_next_runs
    list = TaskerCore.schedules.select { |s| s["namespace"] == "rbtest" && s["template"] == "scheduled" }
    assert_equal %w[new_year paused], list.map { |s| s["name"] }
    year = list.first
    assert_equal ["0 0 1 1 *", "UTC", "skip", true], year.values_at("cron", "time_zone", "missed", "enabled")
    assert_equal({ "year" => true }, year["context"])
    assert_equal 3, year["next_runs"].size
    firsts = year["next_runs"].map { |t| Time.iso8601(t) }
    assert(firsts.all? { |t| t.utc.month == 1 && t.utc.day == 1 && t.utc.hour.zero? })
    assert_equal year["next_runs"], year["next_runs_local"]
    assert_nil year["last_tick"]
    paused = list.last
    refute paused["enabled"]
    assert_empty paused["next_runs"]
  end
end
