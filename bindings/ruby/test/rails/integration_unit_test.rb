# frozen_string_literal: true

# Unit tests of the Rails glue that need no Rails app, no redis and no
# libtasker: the enqueue subscriber's mapping (ActiveJob test adapter), the
# re-publisher's sweep and the configuration checks. The same code against
# the real core, redis and Sidekiq is in rails_e2e_test.rb.
$LOAD_PATH.unshift File.expand_path("../../lib", __dir__)
require "minitest/autorun"
require "active_job"
require "active_support/core_ext/numeric/time"
require "json"
require "ostruct"
require "stringio"
require "active_support/tagged_logging"
require "tasker_core"
require "tasker_core/rails/integration"

ActiveJob::Base.queue_adapter = :test
ActiveJob::Base.logger = Logger.new(nil)

class RailsIntegrationUnitTest < Minitest::Test
  include ActiveJob::TestHelper

  def setup
    @config = TaskerCore::Rails::Configuration.new(core: TaskerCore::Configuration.new)
    TaskerCore::Rails.config = @config
    TaskerCore::Rails.logger = Logger.new(nil)
  end

  def jobs = enqueued_jobs.map { |j| j.slice(:job, :args, :at, :queue) }

  def test_task_enqueue_becomes_perform_later
    TaskerCore::Rails::EnqueueSubscriber.call({ "name" => "task.enqueue", "data" => { "task_id" => 12, "delay_seconds" => 0 } })
    assert_equal [{ job: TaskerCore::Rails::TaskRunnerJob, args: [12], queue: "default" }], jobs
  end

  def test_task_reenqueue_becomes_a_delayed_job
    event = OpenStruct.new(name: "task.reenqueue", data: { task_id: 5, delay_seconds: 2.0 })
    before = Time.now.to_f
    TaskerCore::Rails::EnqueueSubscriber.call(event)
    job = jobs.fetch(0)
    assert_equal [5], job[:args]
    assert_in_delta before + 2.0, job[:at], 0.5
  end

  def test_reenqueue_without_delay_runs_now_and_other_events_are_ignored
    TaskerCore::Rails::EnqueueSubscriber.call({ name: "task.reenqueue", data: { task_id: 6, delay_seconds: 0 } })
    TaskerCore::Rails::EnqueueSubscriber.call({ name: "task.completed", data: { task_id: 6 } })
    TaskerCore::Rails::EnqueueSubscriber.call({ name: "step.completed", data: { task_id: 6 } })
    assert_equal [{ job: TaskerCore::Rails::TaskRunnerJob, args: [6], queue: "default" }], jobs
  end

  def test_wait_for_reports_pushed_jobs
    TaskerCore::Rails::EnqueueSubscriber.call({ name: "task.enqueue", data: { task_id: 77 } })
    assert TaskerCore::Rails::EnqueueSubscriber.wait_for(77, timeout: 0.1)
    refute TaskerCore::Rails::EnqueueSubscriber.wait_for(78, timeout: 0.1)
  end

  def test_queue_name_and_job_class_are_configurable
    @config.queue_name = "tasker"
    TaskerCore::Rails::EnqueueSubscriber.call({ name: "task.enqueue", data: { task_id: 1 } })
    assert_equal "tasker", jobs.fetch(0)[:queue]
  end

  def test_an_enqueue_failure_is_logged_not_raised
    @config.job_class = Class.new { def self.perform_later(*) = raise("redis down") }
    assert_nil TaskerCore::Rails::EnqueueSubscriber.call({ name: "task.enqueue", data: { task_id: 1 } })
  end

  class FakeStore
    attr_reader :claims, :acks

    def initialize(entries) = (@entries, @claims, @acks = entries, [], [])

    def claim(**kw)
      @claims << kw
      @entries.shift(kw[:limit]).map { |id| TaskerCore::Rails::QueueStore::Entry.new(task_id: id, operation: "enqueue") }
    end

    def ack(task_id, owner) = @acks << [task_id, owner]
  end

  # The queue calls go through the gem's client.
  class FakeClient
    attr_reader :calls

    def initialize = @calls = []

    def queue_claim(**kw)
      @calls << [:queue_claim, kw]
      { "entries" => [{ "task_id" => 9, "operation" => "enqueue", "attempts" => 1 }] }
    end

    def queue_ack(task_id, owner) = (@calls << [:queue_ack, task_id, owner]) && { "ok" => true }
  end

  def test_queue_store_uses_the_core_calls
    client = FakeClient.new
    store = TaskerCore::Rails::QueueStore.new(client)
    assert_equal [9], store.claim(owner: "o", limit: 5, lease: 60, grace: 30).map(&:task_id)
    assert store.ack(9, "o")
    assert_equal [[:queue_claim, { owner: "o", limit: 5, lease_seconds: 60, grace_seconds: 30 }], [:queue_ack, 9, "o"]],
                 client.calls
  end

  def test_sweep_claims_due_records_and_pushes_jobs_carrying_the_lease_owner
    @config.republish_grace = 7
    @config.republish_lease = 60
    @config.republish_batch = 2
    store = FakeStore.new([3, 4, 5])
    rp = TaskerCore::Rails::Republisher.new(config: @config, store: store, owner: "me", logger: Logger.new(nil))
    assert_equal [3, 4], rp.sweep
    assert_equal [{ owner: "me", limit: 2, lease: 60, grace: 7 }], store.claims
    assert_equal [[3, "me"], [4, "me"]], jobs.map { |j| j[:args] }
    assert_equal [5], rp.sweep
  end

  def test_sweep_thread_starts_and_stops
    @config.republish_interval = 0.05
    store = FakeStore.new([1])
    rp = TaskerCore::Rails::Republisher.new(config: @config, store: store, owner: "me", logger: Logger.new(nil))
    rp.start
    sleep 0.3
    rp.stop
    refute rp.running?
    assert_operator store.claims.size, :>=, 3
    assert_equal [[1, "me"]], jobs.map { |j| j[:args] }
  end

  def test_configuration_is_checked
    assert_same @config, @config.validate!
    { max_parallel_steps: 0, republish_grace: -1, republisher: :cron, event_group: " ", call_timeout: 0,
      step_lease_ms: -5, backoff: "fast", instrument_events: :maybe }.each do |field, bad|
      c = TaskerCore::Rails::Configuration.new(core: TaskerCore::Configuration.new)
      c.public_send("#{field}=", bad)
      err = assert_raises(TaskerCore::ConfigurationError) { c.validate! }
      assert_includes err.message, "config.tasker.#{field}"
    end
    # The core's own setter checks the transport when it is set.
    c = TaskerCore::Rails::Configuration.new(core: TaskerCore::Configuration.new)
    assert_raises(TaskerCore::ConfigurationError) { c.transport = :grpc }
  end

  # Issue 15 item 6: one configuration class. config.tasker writes the
  # core's settings through to TaskerCore::Configuration (its defaults, its
  # error type) and adds only the integration's own.
  def test_core_settings_go_through_to_the_one_configuration
    core = TaskerCore::Configuration.new
    c = TaskerCore::Rails::Configuration.new(core: core)
    fresh = TaskerCore::Configuration.new
    %i[database_url templates_dir transport server_url api_token library_path max_parallel_steps call_timeout
       event_enqueue auto_migrate backoff step_lease_ms environment log_level shutdown_grace].each do |k|
      assert c.respond_to?(k), "config.tasker.#{k} missing"
      assert c.respond_to?("#{k}="), "config.tasker.#{k}= missing"
      want = fresh.public_send(k)
      want.nil? ? assert_nil(c.public_send(k), k) : assert_equal(want, c.public_send(k), "config.tasker.#{k} has a default of its own")
    end
    c.auto_migrate = true
    c.backoff = { base_ms: 10, max_ms: 100 }
    c.step_lease_ms = 5000
    c.call_timeout = 7
    c.shutdown_grace = 2
    assert_equal [true, { base_ms: 10, max_ms: 100 }, 5000, 7, 2],
                 [core.auto_migrate, core.backoff, core.step_lease_ms, core.call_timeout, core.shutdown_grace]
    refute c.respond_to?(:open_document_bogus)
    assert_raises(NoMethodError) { c.no_such_setting }
    assert_same TaskerCore.config, TaskerCore::Rails::Configuration.new.core
  end

  def test_templates_dir_is_relative_to_the_app_root
    c = TaskerCore::Rails::Configuration.new(core: TaskerCore::Configuration.new)
    assert_equal "/srv/app/config/tasker/tasks", c.templates_dir_under("/srv/app")
    c.templates_dir = "/etc/tasker"
    assert_equal "/etc/tasker", c.templates_dir_under("/srv/app")
  end

  def test_integration_errors_are_tasker_core_errors
    assert_operator TaskerCore::Rails::Error, :<, TaskerCore::Error
    assert_operator TaskerCore::ConfigurationError, :<, TaskerCore::Error
  end

  def test_tagged_logger_tags_lines_tasker
    io = StringIO.new
    rails_logger = ActiveSupport::TaggedLogging.new(ActiveSupport::Logger.new(io))
    log = TaskerCore::Rails::TaggedLogger.new(rails_logger)
    log.warn("lease lost")
    log.info { "lazy" }
    log.debug("hidden") if (rails_logger.level = Logger::INFO)
    assert_equal ["[tasker] lease lost", "[tasker] lazy"], io.string.lines.map(&:chomp)
    plain = StringIO.new
    TaskerCore::Rails::TaggedLogger.new(Logger.new(plain)).error("boom")
    assert_includes plain.string, "[tasker] boom"
  end

  def test_core_events_become_active_support_notifications
    seen = []
    sub = ActiveSupport::Notifications.subscribe(/\.tasker_core\z/) { |name, *, payload| seen << [name, payload] }
    TaskerCore::Rails::Notifications.instrument({ "name" => "task.completed", "data" => { "task_id" => 3, "status" => "complete" } })
    TaskerCore::Rails::Notifications.instrument(OpenStruct.new(name: "step.failed", data: { "task_id" => 3, "step_name" => "charge" }))
    assert_equal [["task.completed.tasker_core", { task_id: 3, status: "complete", event: "task.completed" }],
                  ["step.failed.tasker_core", { task_id: 3, step_name: "charge", event: "step.failed" }]], seen
  ensure
    ActiveSupport::Notifications.unsubscribe(sub)
  end

  def test_notifications_group_by_transport
    c = TaskerCore::Rails::Configuration.new(core: TaskerCore::Configuration.new)
    assert_equal [true, nil], c.notifications_subscription
    c.transport = :socket
    assert_equal [true, "rails-notifications"], c.notifications_subscription
    c.instrument_events = false
    assert_equal [false, nil], c.notifications_subscription
  end

  # A stand-in for Rails.application: records executor.wrap calls.
  class FakeApp
    attr_reader :wraps, :config

    def initialize(cache_classes: true)
      @wraps = 0
      @config = OpenStruct.new(cache_classes: cache_classes)
      app = self
      @executor = Object.new
      @executor.define_singleton_method(:wrap) do |&blk|
        app.instance_variable_set(:@wraps, app.wraps + 1)
        blk.call
      end
    end

    attr_reader :executor
  end

  # Issue 15 item 4 (unit part): each step handler call goes through the
  # Rails executor by way of StepHandlers.around_handler, and is
  # instrumented as process_step.tasker_core.
  def test_handler_calls_run_in_the_rails_executor
    app = FakeApp.new
    seen = []
    sub = ActiveSupport::Notifications.subscribe("process_step.tasker_core") { |*, payload| seen << payload }
    TaskerCore::StepHandlers.around_handler = TaskerCore::Rails::HandlerWrapper.new(app)
    step = TaskerCore::Step.new({ "step_id" => 4, "name" => "noop", "attempt" => 1, "handler_class" => "tasker:noop" })
    task = TaskerCore::Task.new({ "task_id" => 9 })
    res = TaskerCore::StepHandlers.run(task, step, [step])
    assert res["success"], res.inspect
    assert_equal 1, app.wraps
    assert_equal [{ task_id: 9, step_id: 4, step_name: "noop", handler_class: "tasker:noop", attempt: 1, success: true }], seen
  ensure
    TaskerCore::StepHandlers.around_handler = nil
    ActiveSupport::Notifications.unsubscribe(sub) if sub
  end

  def test_handler_calls_in_development_skip_the_interlock_but_return_connections
    app = FakeApp.new(cache_classes: false)
    wrapper = TaskerCore::Rails::HandlerWrapper.new(app)
    assert wrapper.reloading?
    step = TaskerCore::Step.new({ "step_id" => 4, "name" => "noop", "attempt" => 1, "handler_class" => "tasker:noop" })
    assert_equal :ran, wrapper.call(nil, step) { :ran }
    assert_equal 0, app.wraps
  end

  def test_event_group_defaults_by_transport
    c = TaskerCore::Rails::Configuration.new
    c.transport = :embedded
    assert_nil c.enqueue_event_group
    c.transport = :socket
    assert_equal "rails-enqueue", c.enqueue_event_group
    c.event_group = "shop-enqueue"
    assert_equal "shop-enqueue", c.enqueue_event_group
    c.event_group = nil
    assert_nil c.enqueue_event_group
  end

  def with_handle(impl)
    mod = TaskerCore::Rails.singleton_class
    mod.alias_method(:__orig_handle, :handle)
    mod.define_method(:handle, &impl)
    yield
  ensure
    mod.alias_method(:handle, :__orig_handle)
    mod.remove_method(:__orig_handle)
  end

  def test_job_runs_handle_acks_its_lease_and_calls_the_hook
    store = FakeStore.new([])
    TaskerCore::Rails.queue_store = store
    seen = []
    @config.on_task_handled = ->(id, res) { seen << [id, res["outcome"]] }
    with_handle(->(id) { { "task_id" => id, "outcome" => "complete" } }) do
      TaskerCore::Rails::TaskRunnerJob.perform_now(4)
      TaskerCore::Rails::TaskRunnerJob.perform_now(5, "owner-1")
    end
    assert_equal [[5, "owner-1"]], store.acks
    assert_equal [[4, "complete"], [5, "complete"]], seen
  ensure
    TaskerCore::Rails.queue_store = nil
  end

  TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

  # A job of the app's that creates a task when it runs (in a worker, away
  # from the request that enqueued it).
  class CreatesTaskJob < ActiveJob::Base
    include TaskerCore::Rails::TraceContextJob

    @seen = []
    class << self
      attr_reader :seen
    end

    def perform(name)
      self.class.seen << [name, TaskerCore::TraceContext.current]
    end
  end

  # Issue 17 item 5: a job enqueued under a trace context (a request's)
  # carries it in its payload and performs under it.
  def test_trace_context_job_carries_the_enqueuers_traceparent
    CreatesTaskJob.seen.clear
    TaskerCore::TraceContext.with(TRACEPARENT) { CreatesTaskJob.perform_later("traced") }
    CreatesTaskJob.perform_later("plain")
    payloads = enqueued_jobs.map { |j| j.fetch("tasker_traceparent", nil) }
    assert_equal [TRACEPARENT, nil], payloads, "serialized with the job"
    assert_nil TaskerCore::TraceContext.current
    perform_enqueued_jobs
    assert_equal [["traced", TRACEPARENT], ["plain", nil]], CreatesTaskJob.seen
    assert_nil TaskerCore::TraceContext.current, "restored after the job"
    data = CreatesTaskJob.new("x").tap { |j| j.tasker_traceparent = TRACEPARENT }.serialize
    assert_equal TRACEPARENT, ActiveJob::Base.deserialize(data).tasker_traceparent, "survives serialization"
  end

  def test_handler_wrapper_payload_has_the_steps_traceparent
    seen = []
    sub = ActiveSupport::Notifications.subscribe("process_step.tasker_core") { |*, payload| seen << payload }
    TaskerCore::StepHandlers.around_handler = TaskerCore::Rails::HandlerWrapper.new(FakeApp.new)
    step = TaskerCore::Step.new({ "step_id" => 4, "name" => "noop", "attempt" => 1, "handler_class" => "tasker:noop",
                                  "traceparent" => TRACEPARENT })
    assert TaskerCore::StepHandlers.run(TaskerCore::Task.new({ "task_id" => 9 }), step, [step])["success"]
    assert_equal TRACEPARENT, seen.fetch(0)[:traceparent]
  ensure
    TaskerCore::StepHandlers.around_handler = nil
    ActiveSupport::Notifications.unsubscribe(sub) if sub
  end

  def test_trace_context_middleware_is_on_by_default
    assert TaskerCore::Rails::Configuration.new.trace_context_middleware
    assert TaskerCore::Configuration.new.propagate_trace_context
  end

  def test_job_drops_a_missing_task_and_raises_core_errors_for_a_retry
    with_handle(->(_id) { raise TaskerCore::NotFoundError.new("no task 4", code: "not_found") }) do
      assert_nil TaskerCore::Rails::TaskRunnerJob.perform_now(4)
    end
    with_handle(->(_id) { raise TaskerCore::DatabaseError.new("down", code: "database") }) do
      assert_raises(TaskerCore::DatabaseError) { TaskerCore::Rails::TaskRunnerJob.perform_now(4) }
    end
  end
end
