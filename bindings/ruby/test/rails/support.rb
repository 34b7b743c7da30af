# frozen_string_literal: true

require "json"
require "open3"
require "pg"
require "redis"
require "securerandom"
require "socket"
require "timeout"
require "tmpdir"
require "uri"

# Processes and databases of the Rails end-to-end test: a throwaway
# PostgreSQL database (inside the cluster of TEST_DATABASE_URL) migrated by
# `tasker migrate up`, a redis-server on a free port in its own directory, and
# a Sidekiq process running the Rails app under test/rails_app. Everything is
# stopped and dropped by #stop, also when a test fails.
class RailsE2E
  APP = File.expand_path("../rails_app", __dir__)
  BOOT_TIMEOUT = 30

  attr_reader :tmp, :db_url, :redis_url, :sidekiq_pids, :worker_pids, :env, :server_url

  def self.instance
    @instance ||= new.tap(&:start)
  end

  def self.stop
    @instance&.stop
  end

  # Open3.capture3 with a deadline, in a process group of its own: a command
  # still running after timeout seconds gets SIGQUIT (a Go program prints
  # its goroutines' stacks), its whole group SIGKILL two seconds later, and
  # the call raises with what it printed. A hung subprocess fails its test,
  # with the evidence, instead of hanging the run until the stage's timeout
  # kills it.
  def self.capture3(env, *cmd, timeout: 90, **opts)
    Open3.popen3(env, *cmd, pgroup: true, **opts) do |stdin, stdout, stderr, wait|
      stdin.close
      out = Thread.new { stdout.read }
      err = Thread.new { stderr.read }
      unless wait.join(timeout)
        signal_group("QUIT", wait.pid)
        wait.join(2)
        signal_group("KILL", wait.pid) # the rest of the group too: it may hold the pipes
        wait.join
        raise "#{cmd.join(' ')} still running after #{timeout} s; killed. stdout:\n#{out.value}\nstderr:\n" \
              "#{err.value.to_s[-30_000..] || err.value}"
      end
      [out.value, err.value, wait.value]
    end
  end

  def self.signal_group(sig, pid)
    Process.kill(sig, -pid)
  rescue Errno::ESRCH
    nil
  end

  # transport: the app's (:socket also starts `tasker serve --event-enqueue`
  # against the test database); sidekiqs: how many Sidekiq processes;
  # extra_env: more environment for the app's processes.
  #
  # delayed_jobs: how many DelayedJob workers (`bin/rails jobs:work`); with
  # any, the app's ActiveJob adapter is delayed_job (in the test database)
  # and sidekiqs should be 0.
  def initialize(transport: ENV.fetch("TASKER_TRANSPORT", "embedded"), sidekiqs: 1, delayed_jobs: 0, extra_env: {})
    @tasker = ENV.fetch("TASKER_BIN") { abort "TASKER_BIN must name a built `tasker` binary" }
    @base_url = ENV.fetch("TEST_DATABASE_URL") { abort "TEST_DATABASE_URL must name a PostgreSQL database" }
    @transport = transport.to_s
    @sidekiqs = sidekiqs
    @delayed_jobs = delayed_jobs
    @worker_pids = []
    @extra_env = extra_env
    @pids = []
    @sidekiq_pids = []
  end

  def sidekiq_pid = sidekiq_pids.first

  def start
    @tmp = Dir.mktmpdir("tasker-rails-e2e")
    create_database
    run!(@tasker, "migrate", "up", "--database-url", db_url)
    start_redis
    @env = {
      "RAILS_ENV" => "test",
      # The app's own tables (ActiveRecord) live in the same database.
      "DATABASE_URL" => db_url,
      "DB_POOL" => "5",
      "REDIS_URL" => redis_url,
      "TASKER_DATABASE_URL" => db_url,
      "TASKER_TRANSPORT" => @transport,
      "TASKER_REPUBLISH_INTERVAL" => "1",
      "TASKER_REPUBLISH_GRACE" => "3",
      "TASKER_REPUBLISH_LEASE" => "30",
      "SIDEKIQ_POLL_INTERVAL" => "1",
      "RAILS_LOG" => File.join(tmp, "rails.log")
    }
    %w[TASKER_LIBRARY_PATH TASKER_URL TASKER_API_TOKEN].each { |k| @env[k] = ENV[k] if ENV[k] }
    if @transport == "socket" && !ENV["TASKER_URL"]
      start_server
      @env["TASKER_URL"] = server_url
    end
    @env.merge!("ACTIVE_JOB_ADAPTER" => "delayed_job", "DJ_SLEEP_DELAY" => "0.2") if @delayed_jobs.positive?
    @env.merge!(@extra_env)
    rails_runner("db/schema.rb")
    @sidekiqs.times { |i| start_sidekiq(i) }
    @delayed_jobs.times { |i| start_delayed_job(i) }
    self
  end

  def stop
    @pids.reverse_each { |pid| terminate(pid) }
    @pids.clear
    drop_database
    if ENV["KEEP_E2E_TMP"]
      warn "e2e files kept in #{tmp}"
    else
      FileUtils.rm_rf(tmp) if tmp
    end
  end

  # Runs a Ruby script inside the Rails app (bin/rails runner) and returns
  # its stdout. extra_env overrides the app environment.
  def rails_runner(script, *args, extra_env: {})
    out, err, st = RailsE2E.capture3(env.merge(extra_env), RbConfig.ruby, "bin/rails", "runner", script, *args, chdir: APP)
    raise "bin/rails runner #{script} failed (#{st}):\n#{out}\n#{err}" unless st.success?

    out
  end

  # Starts Puma serving the app, once: cluster mode with WORKERS workers and
  # preload_app! (config/puma.rb); returns its base URL and the master's pid.
  def puma(workers: 2)
    @puma ||= begin
      port, pid, log = start_puma(workers: workers)
      ["http://127.0.0.1:#{port}", pid]
    end
  end

  # Spawns Puma with config/puma.rb; waits until it listens unless
  # wait: false. Returns [port, pid, log].
  def start_puma(workers: 2, extra_env: {}, wait: true)
    port = free_port
    log = File.join(tmp, "puma-#{port}.log")
    pid = spawn(env.merge("WEB_CONCURRENCY" => workers.to_s, "RAILS_MAX_THREADS" => "1").merge(extra_env),
                "puma", "-C", "config/puma.rb", "-b", "tcp://127.0.0.1:#{port}", "-e", "test", "config.ru",
                chdir: APP, out: log, err: %i[child out], pgroup: true)
    @pids << pid
    if wait
      wait_until("Puma to listen (log: #{log})") do
        raise "puma exited:\n#{File.read(log)}" if Process.waitpid(pid, Process::WNOHANG)

        TCPSocket.new("127.0.0.1", port).close || true
      rescue Errno::ECONNREFUSED
        false
      end
    end
    [port, pid, log]
  end

  # The child processes of pid (Puma's workers).
  def children(pid)
    File.read("/proc/#{pid}/task/#{pid}/children").split.map(&:to_i)
  rescue Errno::ENOENT
    []
  end

  def libtasker_loaded?(pid)
    File.read("/proc/#{pid}/maps").include?("libtasker")
  end

  # The task as the core reports it (`tasker task show --json`).
  def task(task_id)
    JSON.parse(run!(@tasker, "task", "show", task_id.to_s, "--json", "--database-url", db_url))
  end

  # Polls the core until the task reaches one of states; returns the task.
  def wait_for_task(task_id, states: %w[complete failed blocked cancelled], timeout: 40)
    deadline = monotonic + timeout
    loop do
      t = task(task_id)
      return t if states.include?(t["status"])
      raise "task #{task_id} is still #{t['status']} after #{timeout}s; sidekiq log:\n#{sidekiq_log_tail}" if monotonic > deadline

      sleep 0.2
    end
  end

  # TaskRunnerJob runs recorded by the app (config/initializers/job_log.rb).
  def handled(task_id = nil)
    all = redis.lrange("rails_app:handled", 0, -1).map { |s| JSON.parse(s) }
    task_id ? all.select { |e| e["task_id"] == task_id } : all
  end

  # Rows of a query on the test database (the core's and the app's tables).
  def sql(query, params = [])
    with_db(db_url) { |c| c.exec_params(query, params).to_a }
  end

  # Core events instrumented by the app's processes (ActiveSupport::Notifications).
  def notifications(task_id = nil)
    all = redis.lrange("rails_app:notifications", 0, -1).map { |s| JSON.parse(s) }
    task_id ? all.select { |e| e["task_id"] == task_id } : all
  end

  def queue_record(task_id)
    with_db(db_url) { |c| c.exec_params("SELECT * FROM tasker_task_queue WHERE task_id = $1", [task_id]).first }
  end

  def redis
    @redis ||= Redis.new(url: redis_url)
  end

  # Jobs pushed (ActiveJob enqueue) by any process: [{"task_id", "pid", "job_id"}].
  def pushed(task_id = nil)
    all = redis.lrange("rails_app:pushed", 0, -1).map { |s| JSON.parse(s) }
    task_id ? all.select { |e| e["task_id"] == task_id } : all
  end

  # A protocol call to `tasker serve` (socket runs).
  def rpc(method, params = {})
    require "net/http"
    res = Net::HTTP.post(URI("#{server_url}/v1/rpc/#{method}"), JSON.generate(params), "Content-Type" => "application/json")
    raise "#{method}: HTTP #{res.code} #{res.body}" unless res.is_a?(Net::HTTPSuccess)

    JSON.parse(res.body)
  end

  def sidekiq_log_tail(lines = 60)
    Dir[File.join(tmp, "{sidekiq,delayed_job}*.log")].sort.map do |f|
      "== #{File.basename(f)}\n" + File.readlines(f).last(lines).join
    end.join.then { |s| s.empty? ? "(no log)" : s }
  end

  private

  def monotonic = Process.clock_gettime(Process::CLOCK_MONOTONIC)

  def run!(*cmd)
    out, err, st = RailsE2E.capture3({}, *cmd)
    raise "#{cmd.join(' ')} failed (#{st}):\n#{out}\n#{err}" unless st.success?

    out
  end

  def with_db(url)
    conn = PG.connect(url)
    yield conn
  ensure
    conn&.close
  end

  def create_database
    @db_name = "tasker_rails_e2e_#{Process.pid}_#{SecureRandom.hex(3)}"
    with_db(@base_url) { |c| c.exec("CREATE DATABASE #{@db_name}") }
    uri = URI.parse(@base_url)
    uri.path = "/#{@db_name}"
    @db_url = uri.to_s
  end

  def drop_database
    return unless @db_name

    with_db(@base_url) { |c| c.exec("DROP DATABASE IF EXISTS #{@db_name} WITH (FORCE)") }
    @db_name = nil
  rescue PG::Error => e
    warn "dropping #{@db_name}: #{e.message}"
  end

  def free_port
    s = TCPServer.new("127.0.0.1", 0)
    s.addr[1]
  ensure
    s&.close
  end

  def start_redis
    port = free_port
    dir = File.join(tmp, "redis")
    FileUtils.mkdir_p(dir)
    pid = spawn("redis-server", "--port", port.to_s, "--bind", "127.0.0.1", "--dir", dir, "--save", "",
                "--appendonly", "no", "--logfile", File.join(dir, "redis.log"), pgroup: true)
    @pids << pid
    @redis_url = "redis://127.0.0.1:#{port}/0"
    wait_until("redis-server on port #{port}") do
      redis.ping == "PONG"
    rescue Redis::CannotConnectError
      false
    end
  end

  def start_sidekiq(index = 0)
    log = File.join(tmp, index.zero? ? "sidekiq.log" : "sidekiq-#{index + 1}.log")
    pid = spawn(env, "sidekiq", "-r", APP, "-e", "test", "-c", "5", "-q", "default", "-t", "5",
                chdir: APP, out: log, err: %i[child out], pgroup: true)
    @pids << pid
    @sidekiq_pids << pid
    # Sidekiq registers itself in the "processes" set on its first heartbeat.
    wait_until("Sidekiq to boot (log: #{log})") do
      raise "sidekiq exited:\n#{sidekiq_log_tail}" if Process.waitpid(pid, Process::WNOHANG)

      redis.scard("processes") > index
    end
  end

  # A DelayedJob worker of the app (`bin/rails jobs:work`, the pid is the
  # worker's own). It registers nowhere, so its boot is seen in its log.
  def start_delayed_job(index = 0)
    log = File.join(tmp, "delayed_job-#{index + 1}.log")
    pid = spawn(env.merge("RAILS_LOG" => log), RbConfig.ruby, "bin/rails", "jobs:work",
                chdir: APP, out: log, err: %i[child out], pgroup: true)
    @pids << pid
    @worker_pids << pid
    wait_until("DelayedJob worker to start (log: #{log})") do
      raise "delayed_job worker exited:\n#{sidekiq_log_tail}" if Process.waitpid(pid, Process::WNOHANG)

      File.exist?(log) && File.read(log).include?("Starting job worker")
    end
  end

  # `tasker serve --event-enqueue` on a free port against the test database.
  def start_server
    port = free_port
    log = File.join(tmp, "serve.log")
    pid = spawn(@tasker, "serve", "--database-url", db_url, "--templates", File.join(APP, "config/tasker/tasks"),
                "--listen", "127.0.0.1:#{port}", "--event-enqueue", "--log-level", "warn",
                out: log, err: %i[child out], pgroup: true)
    @pids << pid
    @server_url = "http://127.0.0.1:#{port}"
    wait_until("tasker serve on port #{port} (log: #{log})") do
      raise "tasker serve exited:\n#{File.read(log)}" if Process.waitpid(pid, Process::WNOHANG)

      require "net/http"
      Net::HTTP.get_response(URI("#{@server_url}/health/ready")).is_a?(Net::HTTPSuccess)
    rescue Errno::ECONNREFUSED
      false
    end
  end

  def wait_until(what, timeout: BOOT_TIMEOUT)
    deadline = monotonic + timeout
    until yield
      raise "timed out waiting for #{what}" if monotonic > deadline

      sleep 0.1
    end
  end

  # TERM, then KILL after 10 s, to the process group.
  def terminate(pid)
    t0 = monotonic
    Process.kill("TERM", -pid)
    Timeout.timeout(10) { Process.waitpid(pid) }
    warn "stopped #{pid} in #{(monotonic - t0).round(2)} s" if ENV["E2E_DEBUG"]
  rescue Timeout::Error
    Process.kill("KILL", -pid)
    Process.waitpid(pid)
  rescue Errno::ESRCH, Errno::ECHILD
    nil
  end
end
