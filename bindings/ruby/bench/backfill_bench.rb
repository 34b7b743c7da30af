# frozen_string_literal: true

# A Rails-style backfill: TaskerCore.create_tasks in batches, as a rake task
# enqueueing one workflow per existing record would call it. Prints tasks
# created per second and what a backfill of 1,000,000 tasks would take at
# that rate, for the embedded transport (libtasker in this process) and,
# unless SOCKET=0, the socket transport (a `tasker serve`).
#
#   ruby bench/backfill_bench.rb [tasks=100000] [batch=1000]
#   TASKER_BENCH_DB=postgres TEST_DATABASE_URL=postgres://... ruby bench/backfill_bench.rb 1000000
#
# Each request is a two-step task (a root and its child) with a context of
# its own and an idempotency key ("order-N"), delayed a day so that nothing
# runs it. The run then creates the first batch again and checks that every
# key finds its task instead of creating one. Needs TASKER_LIBRARY_PATH (or
# build/libtasker.so) and TASKER_BIN (or build/tasker).

require_relative "support"

TASKS = Integer(ARGV[0] || 100_000)
BATCH = Integer(ARGV[1] || 1000)
DB = BenchSupport::DB
TMP = Dir.mktmpdir("tasker_backfill")

tdir = File.join(TMP, "templates")
FileUtils.mkdir_p(tdir)
File.write(File.join(tdir, "reminder.yaml"), <<~YAML)
  name: payment_reminder
  namespace_name: billing
  version: 1.0.0
  step_templates:
    - {name: check_paid, handler_class: "tasker:noop"}
    - {name: send_reminder, handler_class: "tasker:noop", depends_on_steps: [check_paid]}
YAML

def requests(from, count, prefix)
  Array.new(count) do |i|
    n = from + i
    TaskerCore.task_request("billing/payment_reminder", { order_id: n }, idempotency_key: "#{prefix}-#{n}",
                                                                          delay_seconds: 86_400)
  end
end

# Creates TASKS tasks BATCH at a time; returns tasks per second.
def backfill(label)
  prefix = "order-#{SecureRandom.hex(3)}"
  created = 0
  t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  (0...TASKS).step(BATCH) do |from|
    results = TaskerCore.create_tasks(requests(from, [BATCH, TASKS - from].min, prefix))
    failed = results.select(&:error?)
    abort "#{label}: #{failed.size} requests failed: #{failed.first.error.inspect}" unless failed.empty?
    created += results.count(&:created?)
  end
  secs = Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
  abort "#{label}: created #{created} of #{TASKS}" unless created == TASKS
  again = TaskerCore.create_tasks(requests(0, [BATCH, TASKS].min, prefix))
  abort "#{label}: a repeated key did not find its task" unless again.all?(&:existing?)
  rate = TASKS / secs
  printf("%-20s %8.0f tasks/s  (%d tasks in %.1f s; 1,000,000 would take %.1f min)\n", label, rate, TASKS, secs,
         1_000_000 / rate / 60)
  rate
end

puts "backfill: #{TASKS} two-step tasks with idempotency keys, batches of #{BATCH}, #{DB}, ruby #{RUBY_VERSION}"
TaskerCore.configure do |c|
  c.transport = :embedded
  c.library_path = BenchSupport::LIB
  c.database_url = BenchSupport.database_url(TMP)
  c.templates_dir = tdir
  c.auto_migrate = true
end
backfill("embedded transport")
TaskerCore.reset!

unless ENV["SOCKET"] == "0"
  BenchSupport.with_serve(BenchSupport.database_url(TMP), tdir, TMP) do |base|
    TaskerCore.configure do |c|
      c.transport = :socket
      c.server_url = base
    end
    backfill("socket transport")
  end
  TaskerCore.reset!
end
BenchSupport.drop_schemas
FileUtils.rm_rf(TMP)
