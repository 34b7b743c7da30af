# frozen_string_literal: true

require_relative "test_helper"
require "logger"
require "stringio"

# The embedded core's log goes to the gem's logger (core_logs :logger, the
# default when a logger is set): libtasker keeps its records in a buffer and
# a thread of the gem drains them (logs_poll) into the logger, tagged.
class CoreLogsTest < RbTestCase
  # A Logger whose lines are kept as [severity, message].
  class MemoryLogger < Logger
    def initialize
      @io = StringIO.new
      super(@io)
      self.formatter = proc { |sev, _time, _prog, msg| "#{sev}\t#{msg}\n" }
    end

    def lines
      @io.string.lines.map { |l| l.chomp.split("\t", 2) }
    end
  end

  def setup
    super
    skip "embedded transport only (tasker serve writes its own log)" unless RbTest::TRANSPORT == :embedded
  end

  # A client of its own (another engine on the suite's database).
  def client_with(logger: MemoryLogger.new, **settings)
    cfg = TaskerCore::Configuration.new
    cfg.transport = :embedded
    cfg.library_path = RbTest.library_path
    cfg.database_url = RbTest.database_url
    cfg.templates_dir = RbTest::TEMPLATES
    cfg.logger = logger
    cfg.rescue_interval_ms = -1
    # Tests run in random order: this may be the first engine on the schema.
    cfg.auto_migrate = true
    settings.each { |k, v| cfg.public_send("#{k}=", v) }
    [TaskerCore::Client.new(cfg), logger]
  end

  def wait_for(what, timeout: 20)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    until (v = yield)
      flunk "timed out waiting for #{what}" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      sleep 0.02
    end
    v
  end

  # Claims a noop task's steps for a worker that never reports and rescues
  # them once their lease expired: the core logs "rescued step with expired
  # lease" at info. Returns the task id.
  def orphan_and_rescue(client)
    id = client.initialize_task("namespace" => "rbtest", "name" => "noop")["task"]["task_id"]
    refute_empty client.claim_steps(id, owner: "gone-#{SecureRandom.hex(3)}")["steps"]
    wait_for("the expired lease to be rescued") { client.rescue_expired["rescued"].positive? }
    id
  end

  def rescue_line(logger, id)
    logger.lines.find { |_, msg| msg.include?("rescued step with expired lease") && msg.match?(/ task_id=#{id}\b/) }
  end

  def test_core_records_are_written_to_the_logger_tagged_at_their_level
    client, logger = client_with(core_log_level: "info", step_lease_ms: 100, core_log_interval: 0.05)
    id = orphan_and_rescue(client)
    sev, msg = wait_for("the core's line in the logger") { rescue_line(logger, id) }
    assert_equal "INFO", sev
    assert_match(/\A\[tasker\] \[core\] rescued step with expired lease attempt=1 step=s\d task_id=#{id}\z/, msg)
    logs = client.transport.core_logs
    assert logs.running?
    client.close
    refute logs.running?, "the log thread outlived the engine"
    assert_nil client.transport.core_logs
  ensure
    client&.close
  end

  # Records logged after the last drain come with tasker_close.
  def test_close_writes_the_records_not_drained_yet
    client, logger = client_with(core_log_level: "info", step_lease_ms: 100, core_log_interval: 3600)
    client.ping
    wait_for("the first drain") { client.transport.core_logs.running? }
    id = orphan_and_rescue(client)
    client.close
    refute_nil rescue_line(logger, id), "lines: #{logger.lines.inspect}"
  ensure
    client&.close
  end

  # Without a logger (or with core_logs :stderr) the core writes to stderr
  # as before: no buffer, no thread, logs_poll refused.
  def test_stderr_stays_the_default_without_a_logger
    client, = client_with(logger: nil)
    refute client.transport.instance_variable_get(:@config).open_document.key?("log_sink")
    client.ping
    assert_nil client.transport.core_logs
    assert_raises(TaskerCore::InvalidRequestError) { client.call("logs_poll") }
  ensure
    client&.close
  end

  def test_core_logs_setting
    cfg = TaskerCore::Configuration.new
    assert_equal :stderr, cfg.core_log_sink
    cfg.logger = Logger.new(nil)
    assert_equal :logger, cfg.core_log_sink
    cfg.core_logs = "stderr"
    assert_equal :stderr, cfg.core_log_sink
    cfg.core_log_level = "debug"
    assert_equal "debug", cfg.log_level
    assert_raises(TaskerCore::ConfigurationError) { cfg.core_logs = :syslog }
    cfg.core_logs = :logger
    cfg.logger = nil
    assert_raises(TaskerCore::ConfigurationError) { cfg.core_log_sink }
  end

  def test_record_format_levels_and_tags
    rec = { "level" => "WARN", "msg" => "claim queue; retrying",
            "attrs" => { "retry_in" => "1s", "err" => "connection refused", "n" => 3, "ok" => true } }
    assert_equal 'claim queue; retrying err="connection refused" n=3 ok=true retry_in=1s', TaskerCore::CoreLogs.format(rec)
    assert_equal Logger::WARN, TaskerCore::CoreLogs.severity("WARN")
    assert_equal Logger::ERROR, TaskerCore::CoreLogs.severity("ERROR+2")
    assert_equal Logger::DEBUG, TaskerCore::CoreLogs.severity("DEBUG-4")

    plain = MemoryLogger.new
    TaskerCore::CoreLogs.new(plain) { nil }.write("records" => [rec], "dropped" => 2)
    assert_equal ["WARN", "[tasker] [core] #{TaskerCore::CoreLogs.format(rec)}"], plain.lines[0]
    assert_match(/\[tasker\] \[core\] 2 core log record\(s\) dropped/, plain.lines[1][1])
  end

  # The log thread is the loading process's: a forked child has none (and
  # cannot open the engine, ForkError).
  def test_a_forked_child_has_no_log_thread
    client, = client_with
    client.ping
    logs = client.transport.core_logs
    assert logs.running?
    reader, writer = IO.pipe
    pid = fork do
      reader.close
      writer.write(logs.running?.to_s)
      writer.close
      exit!(0)
    end
    writer.close
    Process.wait(pid)
    assert_equal "false", reader.read
    assert logs.running?
  ensure
    client&.close
  end
end
