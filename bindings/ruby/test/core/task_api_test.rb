# frozen_string_literal: true

require_relative "test_helper"

# One-line creation, Task objects, the per-attempt history; the templates
# directory and the core settings of the configuration.
class TaskApiTest < RbTestCase
  def test_create_task_in_one_line_returns_a_task_object
    key = "order-#{SecureRandom.hex(4)}"
    task = TaskerCore.create_task("rbtest/linear", { "n" => 1 }, idempotency_key: key, initiator: "test")
    assert_instance_of TaskerCore::Task, task
    assert task.created?
    assert_equal "pending", task.status
    assert_equal %w[rbtest linear], [task.namespace, task.name]
    assert_equal({ "n" => 1 }, task.context)
    assert_equal key, task.idempotency_key
    assert_equal %w[a b c d], task.steps.map(&:name)
    assert(task.steps.all? { |s| s.is_a?(TaskerCore::TaskStep) && s.status == "pending" && s.attempts.zero? })
    assert_equal task.task_id, task["task_id"], "the protocol document stays reachable"

    again = TaskerCore.create_task("rbtest/linear", { "n" => 1 }, idempotency_key: key)
    refute again.created?
    assert_equal task.id, again.id

    res = task.handle
    assert_equal "complete", res["status"]
    done = task.reload
    assert done.complete?
    assert_equal %w[a b c d], done.step("d").results["path"]
    assert_equal "1.0.0", TaskerCore.create_task("rbtest/linear@1.0.0").version
  end

  def test_delayed_task
    at = Time.now + 3600
    task = TaskerCore.create_task("rbtest/linear", { "n" => 1 }, run_at: at)
    assert_equal "pending", task.status
    assert_in_delta at.to_f, Time.iso8601(task.run_at).to_f, 0.001
    later = TaskerCore.create_task("rbtest/linear", { "n" => 2 }, delay_seconds: 90)
    assert_in_delta Time.now.to_f + 90, Time.iso8601(later.run_at).to_f, 30
    assert_nil TaskerCore.create_task("rbtest/linear", { "n" => 3 }).run_at
    err = assert_raises(TaskerCore::InvalidRequestError) do
      TaskerCore.create_task("rbtest/linear", {}, run_at: at, delay_seconds: 5)
    end
    assert_match(/run_at and delay_seconds are exclusive/, err.message)
  end

  def test_retention
    task = TaskerCore.create_task("rbtest/linear", { "n" => 1 })
    assert_equal 7 * 86_400, task.retention_seconds, "the core's default for a finished task"
    assert_equal 30 * 86_400, task.retention_failed_seconds, "and for a failed one"
    assert_nil task.keep_until, "not finished: no time to be pruned at yet"
    task.handle
    done = task.reload
    assert done.complete?
    assert_in_delta Time.iso8601(done.completed_at).to_f + (7 * 86_400), Time.iso8601(done.keep_until).to_f, 0.001
  end

  def test_create_task_errors
    assert_raises(TaskerCore::NotFoundError) { TaskerCore.create_task("rbtest/nope") }
    assert_raises(TaskerCore::InvalidContextError) { TaskerCore.create_task("rbtest/api", { "url" => 5 }) }
    assert_raises(ArgumentError) { TaskerCore.create_task("a/b/c") }
    assert_equal %w[default solo], TaskerCore.task_request("solo").to_h.values_at("namespace", "name")
  end

  def test_steps_and_attempts_with_their_errors
    task = TaskerCore.create_task("rbtest/flaky")
    RbTest.run_task(task.id)
    task = TaskerCore.task(task.id)
    assert task.complete?
    flaky = task.step("flaky")
    assert_equal 3, flaky.attempts
    attempts = TaskerCore.attempts(task.id, step: "flaky")
    assert_equal [1, 2, 3], attempts.map(&:number)
    assert_equal %w[waiting_for_retry waiting_for_retry complete], attempts.map(&:status)
    first = attempts.first.error
    assert_instance_of TaskerCore::StepError, first
    assert_equal "TaskerCore::RetryableError", first.error_class
    assert_equal "flaky 1", first.message
    refute_empty first.backtrace
    assert_equal "flaky 2", attempts[1].error.message
    assert_nil attempts.last.error
    assert attempts.last.succeeded?
    assert_equal TaskerCore.config.owner, attempts.first.worker
    assert_equal attempts.map(&:number), flaky.history.map(&:number)
    assert_equal %w[flaky flaky flaky after], task.attempts.map(&:step_name)

    failed = TaskerCore.create_task("rbtest/exception")
    RbTest.run_task(failed.id)
    failed = failed.reload
    assert failed.error?
    err = failed.step("boom").error
    assert_equal "RbTest::BoomError", err.error_class
    assert_equal "kaboom", err.message
    assert_match(/explode/, err.backtrace.first)
  end

  def test_released_attempt_is_in_the_history
    TaskerCore.config.shutdown_grace = 0.2
    RbTest::StuckHandler.started.clear # a token another test's run left
    task_id = RbTest.create_task("shutdown")["task_id"]
    handled = Thread.new { TaskerCore::BaseTaskHandler.new.handle(task_id) }
    Timeout.timeout(10) { RbTest::StuckHandler.started.pop }
    TaskerCore.shutdown!
    Timeout.timeout(10) { handled.value }
    stuck = TaskerCore.attempts(task_id, step: "stuck")
    assert_equal 1, stuck.size
    assert_equal "pending", stuck.first.status, stuck.inspect
  ensure
    TaskerCore.cancel_shutdown!
    TaskerCore.config.shutdown_grace = 8
    # The stuck handler was stopped: leave no token for another test's.
    RbTest::StuckHandler.gate.clear
    RbTest::StuckHandler.started.clear
  end

  def embedded_only!
    skip "the templates directory is the server's on the socket transport" unless RbTest::TRANSPORT == :embedded
  end

  def open_with(templates_dir)
    cfg = TaskerCore::Configuration.new
    cfg.library_path = RbTest.library_path
    cfg.database_url = "sqlite:#{File.join(RbTest::TMP, "dir-#{SecureRandom.hex(4)}.db")}"
    cfg.templates_dir = templates_dir
    client = TaskerCore::Client.new(cfg)
    [client, client.info]
  end

  def test_a_missing_templates_directory_is_a_template_error
    embedded_only!
    missing = File.join(RbTest::TMP, "no-such-templates")
    e = assert_raises(TaskerCore::InvalidTemplateError) { open_with(missing) }
    assert_includes e.message, missing
    assert_kind_of TaskerCore::CoreError, e
  end

  # The core's own answer, the gem's check bypassed: a template error too
  # (libtasker answered "database": the directory's ENOENT looked like a
  # network error).
  def test_the_core_reports_a_missing_templates_directory_as_a_template_error
    embedded_only!
    missing = File.join(RbTest::TMP, "no-such-templates-#{SecureRandom.hex(3)}")
    cfg = TaskerCore::Configuration.new
    cfg.library_path = RbTest.library_path
    cfg.database_url = "sqlite:#{File.join(RbTest::TMP, "dir-#{SecureRandom.hex(4)}.db")}"
    cfg.define_singleton_method(:resolved_templates_dir) { missing }
    client = TaskerCore::Client.new(cfg)
    e = assert_raises(TaskerCore::InvalidTemplateError) { client.ping }
    assert_equal "invalid_template", e.code
    assert_includes e.message, missing
  ensure
    client&.close
  end

  def test_a_symlinked_templates_directory_is_followed
    embedded_only!
    link = File.join(RbTest::TMP, "templates-link-#{SecureRandom.hex(3)}")
    File.symlink(RbTest::TEMPLATES, link)
    client, info = open_with(link)
    assert_equal Dir[File.join(RbTest::TEMPLATES, "*.yaml")].size, info["templates_loaded"]
    client.close
  end

  def test_every_core_setting_is_in_the_configuration
    cfg = TaskerCore::Configuration.new
    cfg.templates_dir = RbTest::TEMPLATES
    cfg.auto_migrate = true
    cfg.backoff = { base_ms: 10, max_ms: 100, min_ms: 5 }
    cfg.step_lease = 12.5
    cfg.rescue_interval_ms = -1
    cfg.enable_command_handler = true
    cfg.call_timeout = 7
    cfg.environment = "test"
    doc = cfg.open_document
    assert_equal true, doc["auto_migrate"]
    assert_equal({ "base_ms" => 10, "max_ms" => 100, "min_ms" => 5 }, doc["backoff"])
    assert_equal 12_500, doc["step_lease_ms"]
    assert_equal(-1, doc["rescue_interval_ms"])
    assert_equal true, doc["enable_command_handler"]
    assert_equal "test", doc["environment"]
    assert_nil TaskerCore::Configuration.new.max_parallel_steps, "the default is the template's"
    return unless RbTest::TRANSPORT == :embedded

    # libtasker accepts the whole document (it refuses unknown fields).
    cfg.library_path = RbTest.library_path
    cfg.database_url = "sqlite:#{File.join(RbTest::TMP, 'settings.db')}"
    client = TaskerCore::Client.new(cfg)
    assert_in_delta 12.5, client.info["step_lease_seconds"], 0.001
    client.close
  end

  def test_a_configured_library_path_must_exist
    cfg = TaskerCore::Configuration.new
    cfg.library_path = File.join(RbTest::TMP, "nowhere", "libtasker.so")
    e = assert_raises(TaskerCore::ConfigurationError) { cfg.resolved_library_path }
    assert_includes e.message, cfg.library_path
    dir = File.join(RbTest::TMP, "libdir-#{SecureRandom.hex(3)}")
    FileUtils.mkdir_p(dir)
    cfg.library_path = dir
    e = assert_raises(TaskerCore::ConfigurationError) { cfg.resolved_library_path }
    assert_includes e.message, dir
  end

  def test_the_loader_knows_the_macos_name
    host = RbConfig::CONFIG["host_os"]
    RbConfig::CONFIG["host_os"] = "darwin23"
    assert_equal %w[libtasker.dylib libtasker.so], TaskerCore::Configuration.library_names
    dir = File.join(RbTest::TMP, "mac-#{SecureRandom.hex(3)}")
    FileUtils.mkdir_p(dir)
    FileUtils.touch(File.join(dir, "libtasker.dylib"))
    cfg = TaskerCore::Configuration.new
    cfg.library_path = dir
    assert_equal File.join(dir, "libtasker.dylib"), cfg.resolved_library_path
  ensure
    RbConfig::CONFIG["host_os"] = host
  end
end
