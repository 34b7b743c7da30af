# frozen_string_literal: true

# Shared set-up of the gem's suite. One run tests one transport against one
# database, chosen by the environment:
#
#   TASKER_TEST_TRANSPORT  embedded (default) | socket
#   TASKER_TEST_DB         sqlite | postgres (default: postgres when TEST_DATABASE_URL is set)
#   TEST_DATABASE_URL      the PostgreSQL server (a fresh schema is made per run)
#   TASKER_LIBRARY_PATH    libtasker.so (embedded); TASKER_BIN the tasker binary (socket)
#
# Under CI=true a missing PostgreSQL or artifact fails instead of skipping.

$LOAD_PATH.unshift File.expand_path("../../lib", __dir__)
require "minitest/autorun"
require "tasker_core"
require "tmpdir"
require "fileutils"
require "securerandom"
require "socket"
require "uri"
require "net/http"

module RbTest
  ROOT = File.expand_path("../../../..", __dir__)
  TEMPLATES = File.expand_path("templates", __dir__)
  TRANSPORT = (ENV["TASKER_TEST_TRANSPORT"] || "embedded").to_sym
  DB = (ENV["TASKER_TEST_DB"] || (ENV["TEST_DATABASE_URL"].to_s.empty? ? "sqlite" : "postgres")).to_sym
  TMP = Dir.mktmpdir("tasker_core_test")

  # Records handler calls of this process (handlers run here on both transports).
  module Recorder
    @lock = Mutex.new
    @calls = []
    class << self
      def record(entry)
        @lock.synchronize { @calls << entry }
      end

      def calls(task_id = nil)
        @lock.synchronize { @calls.select { |c| task_id.nil? || c[:task_id] == task_id } }
      end
    end
  end

  # Each step returns the path of names from the root to itself.
  class PathHandler < TaskerCore::BaseStepHandler
    def process(task, _sequence, step)
      Recorder.record(task_id: task.task_id, step: step.name, attempt: step.attempt)
      parents = step.dependency_results.values.map { |r| r["path"] || [] }.max_by(&:length) || []
      { "path" => parents + [step.name], "deps" => step.dependency_results.keys.sort }
    end
  end

  class SleepHandler < TaskerCore::BaseStepHandler
    def process(task, _sequence, step)
      t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      sleep config["seconds"].to_f
      t1 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      Recorder.record(task_id: task.task_id, step: step.name, start: t0, finish: t1)
      { "slept" => config["seconds"] }
    end
  end

  # Blocks until StuckHandler.unblock! (or 30 s): a handler still running
  # when its process shuts down.
  class StuckHandler < TaskerCore::BaseStepHandler
    @gate = Queue.new
    @started = Queue.new
    class << self
      attr_reader :gate, :started

      def unblock!
        @gate << :go
      end
    end

    def process(task, _sequence, step)
      self.class.started << step.attempt
      Timeout.timeout(30) { self.class.gate.pop }
      Recorder.record(task_id: task.task_id, step: step.name, attempt: step.attempt)
      { "unstuck" => true }
    end
  end

  class FlakyHandler < TaskerCore::BaseStepHandler
    def process(task, _sequence, step)
      Recorder.record(task_id: task.task_id, step: step.name, attempt: step.attempt,
                      at: Process.clock_gettime(Process::CLOCK_MONOTONIC))
      raise TaskerCore::RetryableError.new("flaky #{step.attempt}", retry_after: 1) if step.attempt <= config["fail_times"]

      { "succeeded_on" => step.attempt }
    end
  end

  class PermanentHandler < TaskerCore::BaseStepHandler
    def process(task, _sequence, step)
      Recorder.record(task_id: task.task_id, step: step.name, attempt: step.attempt)
      raise TaskerCore::PermanentError, "card declined"
    end
  end

  class BoomError < StandardError; end

  class BoomHandler < TaskerCore::BaseStepHandler
    def process(_task, _sequence, _step)
      explode
    end

    def explode
      raise BoomError, "kaboom"
    end
  end

  class ContextUrlApiHandler < TaskerCore::ApiStepHandler
    def request_url(task, _step)
      task.context["url"]
    end

    def process(task, sequence, step)
      Recorder.record(task_id: task.task_id, step: step.name, attempt: step.attempt,
                      at: Process.clock_gettime(Process::CLOCK_MONOTONIC))
      super
    end
  end

  class NoopHandler < TaskerCore::BaseStepHandler
    def process(_task, _sequence, _step)
      nil
    end
  end

  class LinearTaskHandler < TaskerCore::BaseTaskHandler; end

  class << self
    def ci?
      ENV["CI"] == "true"
    end

    def skip_or_fail!(test, msg)
      ci? ? test.flunk(msg) : test.skip(msg)
    end

    def database_url
      @database_url ||=
        case DB
        when :sqlite then "sqlite:#{File.join(TMP, 'tasker.db')}"
        when :postgres then postgres_schema_url
        else raise "TASKER_TEST_DB must be sqlite or postgres"
        end
    end

    def postgres_schema_url
      server = ENV["TEST_DATABASE_URL"].to_s
      raise "TEST_DATABASE_URL is not set: the postgres run needs it" if server.empty?

      @schema = "tasker_rb_#{SecureRandom.hex(5)}"
      system("psql", "-q", "-v", "ON_ERROR_STOP=1", server, "-c", "CREATE SCHEMA #{@schema}", out: File::NULL) ||
        raise("psql could not create schema #{@schema}")
      uri = URI.parse(server)
      q = URI.decode_www_form(uri.query.to_s).reject { |k, _| k == "search_path" }
      uri.query = URI.encode_www_form(q + [["search_path", @schema]])
      uri.to_s
    end

    def drop_schema
      return unless @schema

      system("psql", "-q", ENV["TEST_DATABASE_URL"], "-c", "DROP SCHEMA #{@schema} CASCADE", out: File::NULL,
                                                                                         err: File::NULL)
    end

    def library_path
      ENV["TASKER_LIBRARY_PATH"] || File.join(ROOT, "bindings/ruby/build/libtasker.so")
    end

    def tasker_bin
      ENV["TASKER_BIN"] || File.join(ROOT, "bindings/ruby/build/tasker")
    end

    def free_port
      s = TCPServer.new("127.0.0.1", 0)
      s.addr[1]
    ensure
      s&.close
    end

    # Starts `tasker serve --event-enqueue` for the socket transport.
    def start_server
      port = free_port
      log = File.join(TMP, "serve.log")
      @server_pid = Process.spawn(tasker_bin, "serve", "--database-url", database_url, "--templates", TEMPLATES,
                                  "--listen", "127.0.0.1:#{port}", "--event-enqueue", "--migrate",
                                  "--log-level", "warn", out: log, err: log)
      url = "http://127.0.0.1:#{port}"
      deadline = Time.now + 30
      begin
        Net::HTTP.get_response(URI("#{url}/health/ready")).is_a?(Net::HTTPSuccess) || raise("not ready")
      rescue StandardError
        raise "tasker serve did not start:\n#{File.read(log)}" if Time.now > deadline || Process.waitpid(@server_pid, Process::WNOHANG)

        sleep 0.1
        retry
      end
      url
    end

    def stop_server
      return unless @server_pid

      Process.kill("TERM", @server_pid)
      Process.wait(@server_pid)
    rescue Errno::ESRCH, Errno::ECHILD
      nil
    end

    def configure!
      TaskerCore.configure do |c|
        c.transport = TRANSPORT
        c.templates_dir = TEMPLATES
        c.max_parallel_steps = 4
        c.call_timeout = 30
        if TRANSPORT == :embedded
          c.library_path = library_path
          c.database_url = database_url
          c.auto_migrate = true
          c.backoff = { "base_ms" => 50, "min_ms" => 10, "max_ms" => 500 }
        else
          c.server_url = start_server
        end
      end
    end

    # Handles the task until it is finalized, sleeping through retry delays.
    def run_task(task_id, deadline: 30)
      stop = Time.now + deadline
      loop do
        res = TaskerCore::BaseTaskHandler.new.handle(task_id)
        return res if res["finalized"]
        raise "task #{task_id} did not finish in #{deadline}s: #{res}" if Time.now > stop

        wait = res["next_run_at"] ? Time.parse(res["next_run_at"]) - Time.now : 0.05
        sleep(wait.clamp(0.01, 5))
      end
    end

    def create_task(name, context: {}, **opts)
      TaskerCore::BaseTaskHandler.new.initialize_task(
        TaskerCore::TaskRequest.new(namespace: "rbtest", name: name, context: context, **opts)
      )
    end

    def steps(task_id)
      TaskerCore.client.task(task_id)["task"]["steps"].to_h { |s| [s["name"], s] }
    end
  end
end

require "time"
unless defined?(RBTEST_CONFIGURED)
  RBTEST_CONFIGURED = true
  available = RbTest::TRANSPORT == :embedded ? File.file?(RbTest.library_path) : File.executable?(RbTest.tasker_bin)
  if !available
    msg = "#{RbTest::TRANSPORT} transport: #{RbTest::TRANSPORT == :embedded ? RbTest.library_path : RbTest.tasker_bin} not built"
    raise msg if RbTest.ci?

    warn "SKIP: #{msg}"
    RBTEST_UNAVAILABLE = msg
  else
    RbTest.configure!
  end
  Minitest.after_run do
    TaskerCore.reset!
    RbTest.stop_server
    RbTest.drop_schema
    FileUtils.rm_rf(RbTest::TMP)
  end
end

# Base class of the suite's tests: skips when the transport is unavailable.
class RbTestCase < Minitest::Test
  def setup
    skip RBTEST_UNAVAILABLE if defined?(RBTEST_UNAVAILABLE)
  end
end
