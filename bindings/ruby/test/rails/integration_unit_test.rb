# frozen_string_literal: true

# Unit tests of the Rails glue that need no Rails app, no redis and no
# libtasker: the enqueue subscriber's mapping (ActiveJob test adapter), the
# re-publisher's sweep, the configuration checks, and (with
# TEST_DATABASE_URL and TASKER_BIN) the PostgreSQL queue statements against a
# migrated schema.
$LOAD_PATH.unshift File.expand_path("../../lib", __dir__)
require "minitest/autorun"
require "active_job"
require "active_support/core_ext/numeric/time"
require "json"
require "ostruct"
require "tasker_core/rails/integration"

ActiveJob::Base.queue_adapter = :test
ActiveJob::Base.logger = Logger.new(nil)

class RailsIntegrationUnitTest < Minitest::Test
  include ActiveJob::TestHelper

  def setup
    @config = TaskerCore::Rails::Configuration.new
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
    { transport: :grpc, max_parallel_steps: 0, republish_grace: -1, republisher: :cron }.each do |field, bad|
      c = TaskerCore::Rails::Configuration.new
      c.public_send("#{field}=", bad)
      err = assert_raises(ArgumentError) { c.validate! }
      assert_includes err.message, field.to_s
    end
    c = TaskerCore::Rails::Configuration.new
    c.transport = :socket
    c.server_url = nil
    assert_raises(ArgumentError) { c.validate! }
  end
end

# The fallback statements against a real migrated schema.
class RailsQueueStorePostgresTest < Minitest::Test
  def setup
    skip "needs TEST_DATABASE_URL and TASKER_BIN" unless ENV["TEST_DATABASE_URL"] && ENV["TASKER_BIN"]
    require "pg"
    require "open3"
    require "securerandom"
    @base = ENV["TEST_DATABASE_URL"]
    @db = "tasker_rails_unit_#{Process.pid}_#{SecureRandom.hex(3)}"
    PG.connect(@base).tap { |c| c.exec("CREATE DATABASE #{@db}") }.close
    uri = URI.parse(@base)
    uri.path = "/#{@db}"
    @url = uri.to_s
    out, st = Open3.capture2e(ENV["TASKER_BIN"], "migrate", "up", "--database-url", @url)
    assert st.success?, out
    @conn = PG.connect(@url)
    @store = TaskerCore::Rails::QueueStore::Postgres.new(@url)
  end

  def teardown
    @store&.close
    @conn&.close
    PG.connect(@base).tap { |c| c.exec("DROP DATABASE IF EXISTS #{@db} WITH (FORCE)") }.close if @db
  end

  # A task row and its queue record, due age_seconds ago.
  def queued_task(age_seconds)
    @named ||= @conn.exec(<<~SQL).getvalue(0, 0)
      WITH ns AS (INSERT INTO tasker_namespaces (name, created_at) VALUES ('ns', now()) RETURNING namespace_id)
      INSERT INTO tasker_named_tasks (namespace_id, name, version, created_at)
      SELECT namespace_id, 'n', '1.0.0', now() FROM ns RETURNING named_task_id
    SQL
    id = @conn.exec_params(<<~SQL, [@named]).getvalue(0, 0).to_i
      INSERT INTO tasker_tasks (named_task_id, namespace, name, version, state, context, max_parallel_steps, created_at, updated_at)
      VALUES ($1, 'ns', 'n', '1.0.0', 'pending', '{}', 1, now(), now()) RETURNING task_id
    SQL
    @conn.exec_params(<<~SQL, [id, age_seconds])
      INSERT INTO tasker_task_queue (task_id, operation, run_at, created_at, updated_at)
      VALUES ($1, 'enqueue', now() - make_interval(secs => $2::float8), now(), now())
    SQL
    id
  end

  def test_claim_respects_grace_and_leases_and_ack_deletes_only_own_claims
    old = queued_task(10)
    young = queued_task(0)
    claimed = @store.claim(owner: "a", limit: 10, lease: 60, grace: 5)
    assert_equal [old], claimed.map(&:task_id)
    assert_equal 1, claimed.first.attempts
    assert_empty @store.claim(owner: "b", limit: 10, lease: 60, grace: 5), "a leased record was claimed twice"
    refute @store.ack(old, "b")
    assert @store.ack(old, "a")
    assert_equal 0, @conn.exec_params("SELECT count(*) FROM tasker_task_queue WHERE task_id = $1", [old]).getvalue(0, 0).to_i
    assert_equal 1, @conn.exec_params("SELECT count(*) FROM tasker_task_queue WHERE task_id = $1", [young]).getvalue(0, 0).to_i
  end

  def test_an_expired_lease_is_claimed_again
    id = queued_task(10)
    assert_equal [id], @store.claim(owner: "a", limit: 10, lease: 0.2, grace: 5).map(&:task_id)
    sleep 0.4
    again = @store.claim(owner: "b", limit: 10, lease: 60, grace: 5)
    assert_equal [id], again.map(&:task_id)
    assert_equal 2, again.first.attempts
  end
end
