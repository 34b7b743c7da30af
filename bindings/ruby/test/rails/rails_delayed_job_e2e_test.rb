# frozen_string_literal: true

# End-to-end on DelayedJob (issue 15 item 10): the Rails app under
# test/rails_app with ActiveJob on delayed_job_active_record (its
# delayed_jobs table in the app's PostgreSQL database, created by the test),
# one DelayedJob worker (`bin/rails jobs:work`), the embedded transport, and
# the core on the same database. Run by scripts/test.d/30-rails.sh:
#
#   TASKER_BIN=... TASKER_LIBRARY_PATH=.../libtasker.so TEST_DATABASE_URL=postgres://... \
#     ruby bindings/ruby/test/rails/rails_delayed_job_e2e_test.rb
require "minitest/autorun"
require_relative "support"

class RailsDelayedJobE2ETest < Minitest::Test
  def self.e2e
    @e2e ||= RailsE2E.new(sidekiqs: 0, delayed_jobs: 1).start
  end

  Minitest.after_run { @e2e&.stop }

  def e2e = self.class.e2e

  def create_task(name, context)
    out = e2e.rails_runner("script/create_task.rb", "shop", name, JSON.generate(context))
    res = JSON.parse(out.lines.last)
    assert res["enqueued"], "the creating process pushed no job: #{res.inspect}"
    Integer(res.fetch("task_id"))
  end

  def dj_jobs
    e2e.sql("SELECT id, handler, attempts, last_error, run_at, failed_at FROM delayed_jobs")
  end

  # The job pushed on task.enqueue runs the first attempt; the step asks for
  # a retry in 2 s, the core publishes task.reenqueue, and the worker's
  # subscriber pushes TaskRunnerJob.set(wait: 2): a DelayedJob row with a
  # run_at in the future, which the worker runs when it is due.
  def test_task_runs_on_delayed_job_with_a_delayed_reenqueue
    task_id = create_task("flaky_payment", { "order_id" => 8 })
    task = e2e.wait_for_task(task_id, timeout: 40)

    assert_equal "complete", task["status"], JSON.pretty_generate(task)
    charge = task["steps"].find { |s| s["name"] == "charge_card" }
    assert_equal 2, charge["attempts"]
    assert_equal({ "charged_cents" => 4200, "attempt" => 2 }, charge["results"])

    worker = e2e.worker_pids.first
    runs = e2e.handled(task_id).sort_by { |r| r["started"] }
    assert_operator runs.size, :>=, 2, runs.inspect
    assert(runs.all? { |r| r["pid"] == worker && !r["sidekiq"] }, "runs outside the DelayedJob worker: #{runs.inspect}")
    first = runs.first
    assert_equal "retry_viable", first["outcome"], runs.inspect
    later = runs.drop(1).find { |r| r["status"] == "complete" }
    refute_nil later, runs.inspect
    assert_operator later["started"] - first["finished"], :>=, 1.5, runs.inspect

    pushes = e2e.pushed(task_id)
    delayed = pushes.find { |p| p["scheduled_at"] }
    refute_nil delayed, "no delayed push (set(wait:)) for the re-enqueue: #{pushes.inspect}"
    assert_equal worker, delayed["pid"], "the re-enqueue was not pushed by the worker's subscriber: #{pushes.inspect}"
    assert_operator delayed["scheduled_at"].to_f - first["finished"], :>=, 1.0, pushes.inspect
    assert_nil e2e.queue_record(task_id), "the durable queue record outlived the task"
    wait_for_empty_queue
  end

  # ActiveRecord step handlers on a DelayedJob worker: the app's database
  # serves the jobs table, the handlers and (here) the core at once.
  def test_active_record_handlers_on_delayed_job
    ids = JSON.parse(e2e.rails_runner("script/create_tasks.rb", "shop", "ledger", "5").lines.last).fetch("task_ids")
    ids.each do |id|
      task = e2e.wait_for_task(id, timeout: 40)
      assert_equal "complete", task["status"], JSON.pretty_generate(task)
      assert(task["steps"].all? { |s| s["attempts"] == 1 }, JSON.pretty_generate(task["steps"]))
      assert_equal({ "total_cents" => 1300 }, task["steps"].find { |s| s["name"] == "total" }["results"])
    end
    wait_for_empty_queue
  end

  # Every DelayedJob job ran and succeeded (failed ones are kept, see
  # config/initializers/delayed_job.rb).
  def wait_for_empty_queue
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
    until (left = dj_jobs).empty?
      flunk "DelayedJob jobs left: #{left.inspect}\n#{e2e.sidekiq_log_tail}" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      sleep 0.1
    end
  end
end
