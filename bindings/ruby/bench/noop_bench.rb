# frozen_string_literal: true

# No-op steps per second: the Go coordinator with Go no-op handlers, Ruby
# handlers through the embedded transport (libtasker), and Ruby handlers
# through the socket transport (tasker serve), in one run, on one database.
#
#   ruby bench/noop_bench.rb [tasks=200] [steps=10]
#   TASKER_BENCH_DB=postgres TEST_DATABASE_URL=postgres://... ruby bench/noop_bench.rb
#
# Needs TASKER_LIBRARY_PATH (or build/libtasker.so) and TASKER_BIN (or
# build/tasker). Each task is `steps` independent no-op steps with
# max_parallel_steps = steps; tasks run one after the other, so the numbers
# are per-worker throughput.

require_relative "support"

TASKS = Integer(ARGV[0] || 200)
STEPS = Integer(ARGV[1] || 10)
DB = BenchSupport::DB
TMP = Dir.mktmpdir("tasker_bench")

# A Ruby no-op step handler.
class BenchNoop < TaskerCore::BaseStepHandler
  def process(_task, _sequence, _step)
    nil
  end
end

def template(name, handler)
  steps = (1..STEPS).map { |i| "  - {name: s#{i}, handler_class: \"#{handler}\"}" }.join("\n")
  "name: #{name}\nnamespace_name: bench\nversion: 1.0.0\nmax_parallel_steps: #{STEPS}\nstep_templates:\n#{steps}\n"
end

tdir = File.join(TMP, "templates")
FileUtils.mkdir_p(tdir)
File.write(File.join(tdir, "go.yaml"), template("go_noop", "tasker:noop"))
File.write(File.join(tdir, "ruby.yaml"), template("ruby_noop", "BenchNoop"))

URL = BenchSupport.database_url(TMP)

def create(name)
  TaskerCore.client.initialize_task(TaskerCore::TaskRequest.new(namespace: "bench", name: name))["task"]["task_id"]
end

def measure(label, name)
  ids = Array.new(TASKS) { create(name) }
  warm = ids.shift(5)
  warm.each { |id| yield id }
  t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  ids.each do |id|
    res = yield id
    raise "#{label}: task #{id} ended #{res['status']}" unless res["status"] == "complete"
  end
  secs = Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
  rate = ids.size * STEPS / secs
  printf("%-34s %8.0f steps/s  (%d tasks x %d steps in %.2f s)\n", label, rate, ids.size, STEPS, secs)
  rate
end

puts "no-op steps/s, #{DB}, #{TASKS} tasks x #{STEPS} independent steps, max_parallel_steps #{STEPS}, ruby #{RUBY_VERSION}"
TaskerCore.configure do |c|
  c.transport = :embedded
  c.library_path = BenchSupport::LIB
  c.database_url = URL
  c.templates_dir = tdir
  c.auto_migrate = true
  c.max_parallel_steps = STEPS
end
go = measure("Go handlers (Go coordinator)", "go_noop") { |id| TaskerCore.client.handle_in_go(id) }
emb = measure("Ruby handlers, embedded transport", "ruby_noop") { |id| TaskerCore::BaseTaskHandler.new.handle(id) }
TaskerCore.reset!

sock = BenchSupport.with_serve(URL, tdir, TMP, "--event-enqueue") do |base|
  TaskerCore.configure do |c|
    c.transport = :socket
    c.server_url = base
    c.max_parallel_steps = STEPS
  end
  measure("Ruby handlers, socket transport", "ruby_noop") { |id| TaskerCore::BaseTaskHandler.new.handle(id) }
end
printf("Ruby embedded / Go = %.0f%%   Ruby socket / Go = %.0f%%\n", 100 * emb / go, 100 * sock / go)
TaskerCore.reset!
BenchSupport.drop_schemas
FileUtils.rm_rf(TMP)
