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

$LOAD_PATH.unshift File.expand_path("../lib", __dir__)
require "tasker_core"
require "tmpdir"
require "fileutils"
require "securerandom"
require "net/http"
require "uri"
require "socket"

TASKS = Integer(ARGV[0] || 100_000)
BATCH = Integer(ARGV[1] || 1000)
DB = (ENV["TASKER_BENCH_DB"] || "sqlite").to_sym
BUILD = File.expand_path("../build", __dir__)
LIB = ENV["TASKER_LIBRARY_PATH"] || File.join(BUILD, "libtasker.so")
BIN = ENV["TASKER_BIN"] || File.join(BUILD, "tasker")
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

@schemas = []
def database_url
  return "sqlite:#{File.join(TMP, "backfill-#{SecureRandom.hex(4)}.db")}" if DB == :sqlite

  server = ENV.fetch("TEST_DATABASE_URL")
  schema = "tasker_backfill_#{SecureRandom.hex(4)}"
  system("psql", "-q", server, "-c", "CREATE SCHEMA #{schema}", out: File::NULL) || abort("psql failed")
  @schemas << schema
  uri = URI.parse(server)
  uri.query = URI.encode_www_form(URI.decode_www_form(uri.query.to_s) + [["search_path", schema]])
  uri.to_s
end

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
  c.library_path = LIB
  c.database_url = database_url
  c.templates_dir = tdir
  c.auto_migrate = true
end
backfill("embedded transport")
TaskerCore.reset!

unless ENV["SOCKET"] == "0"
  url = database_url
  port = TCPServer.new("127.0.0.1", 0).then { |s| s.addr[1].tap { s.close } }
  log = File.join(TMP, "serve.log")
  pid = Process.spawn(BIN, "serve", "--database-url", url, "--templates", tdir, "--listen", "127.0.0.1:#{port}",
                      "--migrate", "--log-level", "warn", out: log, err: log)
  begin
    deadline = Time.now + 30
    begin
      Net::HTTP.get_response(URI("http://127.0.0.1:#{port}/health/ready"))
    rescue StandardError
      abort File.read(log) if Time.now > deadline
      sleep 0.1
      retry
    end
    TaskerCore.configure do |c|
      c.transport = :socket
      c.server_url = "http://127.0.0.1:#{port}"
    end
    backfill("socket transport")
  ensure
    Process.kill("TERM", pid)
    Process.wait(pid)
  end
  TaskerCore.reset!
end
@schemas.each do |schema|
  system("psql", "-q", ENV["TEST_DATABASE_URL"], "-c", "DROP SCHEMA #{schema} CASCADE", out: File::NULL, err: File::NULL)
end
FileUtils.rm_rf(TMP)
