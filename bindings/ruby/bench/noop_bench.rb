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

$LOAD_PATH.unshift File.expand_path("../lib", __dir__)
require "tasker_core"
require "tmpdir"
require "fileutils"
require "securerandom"
require "net/http"
require "uri"
require "socket"

TASKS = Integer(ARGV[0] || 200)
STEPS = Integer(ARGV[1] || 10)
DB = (ENV["TASKER_BENCH_DB"] || "sqlite").to_sym
BUILD = File.expand_path("../build", __dir__)
LIB = ENV["TASKER_LIBRARY_PATH"] || File.join(BUILD, "libtasker.so")
BIN = ENV["TASKER_BIN"] || File.join(BUILD, "tasker")
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

@schema = nil
def database_url
  return "sqlite:#{File.join(TMP, 'bench.db')}" if DB == :sqlite

  server = ENV.fetch("TEST_DATABASE_URL")
  @schema = "tasker_bench_#{SecureRandom.hex(4)}"
  system("psql", "-q", server, "-c", "CREATE SCHEMA #{@schema}", out: File::NULL) || abort("psql failed")
  uri = URI.parse(server)
  uri.query = URI.encode_www_form(URI.decode_www_form(uri.query.to_s) + [["search_path", @schema]])
  uri.to_s
end
URL = database_url

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
  c.library_path = LIB
  c.database_url = URL
  c.templates_dir = tdir
  c.auto_migrate = true
  c.max_parallel_steps = STEPS
end
go = measure("Go handlers (Go coordinator)", "go_noop") { |id| TaskerCore.client.handle_in_go(id) }
emb = measure("Ruby handlers, embedded transport", "ruby_noop") { |id| TaskerCore::BaseTaskHandler.new.handle(id) }
TaskerCore.reset!

port = TCPServer.new("127.0.0.1", 0).then { |s| s.addr[1].tap { s.close } }
log = File.join(TMP, "serve.log")
pid = Process.spawn(BIN, "serve", "--database-url", URL, "--templates", tdir, "--listen", "127.0.0.1:#{port}",
                    "--event-enqueue", "--migrate", "--log-level", "warn", out: log, err: log)
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
    c.max_parallel_steps = STEPS
  end
  sock = measure("Ruby handlers, socket transport", "ruby_noop") { |id| TaskerCore::BaseTaskHandler.new.handle(id) }
ensure
  Process.kill("TERM", pid)
  Process.wait(pid)
end
printf("Ruby embedded / Go = %.0f%%   Ruby socket / Go = %.0f%%\n", 100 * emb / go, 100 * sock / go)
TaskerCore.reset!
system("psql", "-q", ENV["TEST_DATABASE_URL"], "-c", "DROP SCHEMA #{@schema} CASCADE", out: File::NULL, err: File::NULL) if @schema
FileUtils.rm_rf(TMP)
