# frozen_string_literal: true

# End-to-end on the SOCKET transport: `tasker serve --event-enqueue` against
# a throwaway PostgreSQL database, two Sidekiq processes of the Rails app
# (test/rails_app) talking to it, both with the enqueue subscriber on. They
# join the core subscription group "rails-enqueue" (the Rails integration's
# default for :socket), so each task.enqueue is turned into a job by exactly
# one of them. Run by scripts/test.d/30-rails.sh:
#
#   TASKER_BIN=... TEST_DATABASE_URL=postgres://... ruby bindings/ruby/test/rails/rails_socket_e2e_test.rb
require "minitest/autorun"
require_relative "support"

class RailsSocketE2ETest < Minitest::Test
  TASKS = Integer(ENV.fetch("TASKER_E2E_TASKS", "20"))

  def setup
    # The re-publisher stays on (it is the at-least-once backstop) but with a
    # grace far above how long a job waits here, so that any second job for a
    # task could only come from a second event delivery: the thing under test.
    @e2e = RailsE2E.new(transport: :socket, sidekiqs: 2, extra_env: { "TASKER_REPUBLISH_GRACE" => "60" }.merge(group_env)).start
  end

  # TASKER_E2E_EVENT_GROUP="" runs the negative control: no group, so each
  # process pushes a job for every event and the test fails.
  def group_env
    ENV.key?("TASKER_E2E_EVENT_GROUP") ? { "TASKER_EVENT_GROUP" => ENV["TASKER_E2E_EVENT_GROUP"] } : {}
  end

  def teardown
    @e2e&.stop
  end

  def test_two_sidekiq_processes_in_one_group_push_one_job_per_task
    # Both Sidekiq processes subscribe when they first open their client (the
    # re-publisher's first sweep, a second after boot).
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 20
    until @e2e.rpc("info")["subscriptions"] >= 2
      flunk "the Sidekiq processes did not subscribe:\n#{@e2e.sidekiq_log_tail}" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      sleep 0.1
    end

    # The creating process is not a member (it exits at once).
    out = @e2e.rails_runner("script/create_tasks.rb", "shop", "order_fulfillment", TASKS.to_s,
                            extra_env: { "TASKER_ENQUEUE_SUBSCRIBER" => "0" })
    ids = JSON.parse(out.lines.last).fetch("task_ids")
    assert_equal TASKS, ids.uniq.size

    ids.each do |id|
      task = @e2e.wait_for_task(id, timeout: 60)
      assert_equal "complete", task["status"], JSON.pretty_generate(task)
    end
    sleep 1.5 # a duplicate push would show up by now (events are polled every 200 ms)

    pushed = @e2e.pushed.select { |p| ids.include?(p["task_id"]) }
    runs = @e2e.handled.select { |r| ids.include?(r["task_id"]) }
    ids.each do |id|
      mine = pushed.select { |p| p["task_id"] == id }
      assert_equal 1, mine.size, "task #{id}: expected one job push, got #{mine.inspect}"
      assert_nil mine.first["lease_owner"], "task #{id} was pushed by the re-publisher, not by its event: #{mine.inspect}"
      ran = runs.select { |r| r["task_id"] == id }
      assert_equal 1, ran.size, "task #{id}: expected one TaskRunnerJob run, got #{ran.inspect}"
      assert_equal "complete", ran.first["status"]
      assert_nil @e2e.queue_record(id), "task #{id}: the durable queue record outlived the task"
    end
    pushers = pushed.map { |p| p["pid"] }.tally
    assert_equal @e2e.sidekiq_pids.sort, pushers.keys.sort,
                 "both group members should have pushed jobs (pushes by pid: #{pushers.inspect})"
    runners = runs.map { |r| r["pid"] }.uniq
    assert((runners - @e2e.sidekiq_pids).empty?, "jobs ran outside the Sidekiq processes: #{runs.inspect}")
  end
end
