# frozen_string_literal: true

# End-to-end: the Rails app under test/rails_app, ActiveJob on Sidekiq with a
# local redis-server, PostgreSQL as the core's database. Run by
# scripts/test.d/30-rails.sh, which builds `tasker` and libtasker:
#
#   TASKER_BIN=... TASKER_LIBRARY_PATH=.../libtasker.so TEST_DATABASE_URL=postgres://... \
#     ruby bindings/ruby/test/rails/rails_e2e_test.rb
require "minitest/autorun"
require_relative "support"

Minitest.after_run { RailsE2E.stop }

class RailsE2ETest < Minitest::Test
  def e2e = RailsE2E.instance

  # Creates a task from Ruby inside the app; returns [task_id, creator pid].
  def create_task(name, context, extra_env: {})
    out = e2e.rails_runner("script/create_task.rb", "shop", name, JSON.generate(context), extra_env: extra_env)
    res = JSON.parse(out.lines.last)
    [Integer(res.fetch("task_id")), res.fetch("pid")]
  end

  def test_task_created_in_the_app_is_run_by_sidekiq
    task_id, creator = create_task("order_fulfillment", { "order_id" => 7 })
    task = e2e.wait_for_task(task_id, timeout: 30)

    assert_equal "complete", task["status"], JSON.pretty_generate(task)
    steps = task["steps"].to_h { |s| [s["name"], s] }
    assert(steps.values.all? { |s| s["status"] == "complete" })
    assert_equal({ "shipped" => true, "reservation" => "R-7", "authorization" => "A-7" }, steps["ship_order"]["results"])

    runs = e2e.handled(task_id)
    refute_empty runs, "no TaskRunnerJob ran for task #{task_id}"
    run = runs.find { |r| r["lease_owner"].nil? }
    refute_nil run, "the job pushed by the task.enqueue subscriber did not run: #{runs.inspect}"
    assert run["sidekiq"], "the job ran outside Sidekiq: #{run.inspect}"
    assert_equal e2e.sidekiq_pid, run["pid"]
    refute_equal creator, run["pid"]
    assert_equal "complete", runs.last["status"]
    assert_nil e2e.queue_record(task_id), "the durable queue record outlived the task"

    # The core's events as ActiveSupport::Notifications, in the process that
    # ran the task (embedded: each process sees its own engine's events).
    names = nil
    wait_until("task.completed.tasker_core for task #{task_id}") do
      names = e2e.notifications(task_id).select { |n| n["pid"] == e2e.sidekiq_pid }.map { |n| n["name"] }
      names.include?("task.completed.tasker_core")
    end
    assert_equal 4, names.count("step.completed.tasker_core"), names.inspect
    steps = e2e.notifications(task_id).select { |n| n["name"] == "step.completed.tasker_core" }.map { |n| n["step_name"] }
    assert_equal %w[authorize_payment reserve_inventory ship_order validate_order], steps.sort
  end

  def wait_until(what, timeout: 10)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    until yield
      flunk "timed out waiting for #{what}" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      sleep 0.1
    end
  end

  def test_task_created_by_a_web_request_in_puma_is_run_by_sidekiq
    require "net/http"
    base, puma_pid = e2e.puma
    res = Net::HTTP.post(URI("#{base}/orders"), JSON.generate(order_id: 11), "Content-Type" => "application/json")
    assert_equal "201", res.code, res.body
    created = JSON.parse(res.body)
    task_id = created.fetch("task_id")
    assert_includes e2e.children(puma_pid), created["pid"], "the request was not served by a Puma worker"

    task = e2e.wait_for_task(task_id, timeout: 30)
    assert_equal "complete", task["status"], JSON.pretty_generate(task)
    run = e2e.handled(task_id).find { |r| r["lease_owner"].nil? }
    refute_nil run, "the job pushed by Puma's subscriber did not run: #{e2e.handled(task_id).inspect}"
    assert_equal e2e.sidekiq_pid, run["pid"]

    shown = JSON.parse(Net::HTTP.get(URI("#{base}/tasks/#{task_id}")))
    assert_equal "complete", shown["status"]
    res = Net::HTTP.post(URI("#{base}/orders"), JSON.generate(order_id: 0), "Content-Type" => "application/json")
    assert_equal "422", res.code, res.body
  end

  # Issue 15 item 9: Puma in cluster mode, 2 workers, preload_app!
  # (test/rails_app/config/puma.rb). The master boots the app but never
  # loads libtasker; each worker loads its own on its first call, creates a
  # task in a request and runs it there.
  def test_puma_workers_with_preload_app_create_and_run_tasks
    require "net/http"
    base, master = e2e.puma
    workers = []
    wait_until("2 Puma workers", timeout: 30) { (workers = e2e.children(master)).size == 2 }
    refute e2e.libtasker_loaded?(master), "the Puma master loaded libtasker"

    served = {}
    order = 100
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 45
    # Each worker must have created a task and run steps of one in a request
    # (the task's job, pushed at creation, may get there first: then the
    # request finds nothing left to run, and the next round tries again).
    ran_in = ->(pid) { served.fetch(pid, []).sum { |b| b["steps_executed"].to_i }.positive? }
    # One thread per worker: concurrent requests reach both.
    until workers.all?(&ran_in)
      flunk "requests ran steps only in #{served.select { |pid, _| ran_in.call(pid) }.keys.inspect} of #{workers.inspect}: " \
            "#{served.inspect}" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
      Array.new(4) do
        order += 1
        id = order
        Thread.new do
          Net::HTTP.post(URI("#{base}/orders"), JSON.generate(order_id: id, run: "inline"), "Content-Type" => "application/json")
        end
      end.map(&:value).each do |res|
        assert_equal "201", res.code, res.body
        body = JSON.parse(res.body)
        assert_includes workers, body["pid"]
        assert body["libtasker"], "the worker did not load libtasker itself: #{body.inspect}"
        (served[body["pid"]] ||= []) << body
      end
    end
    served.each_value do |bodies|
      bodies.each do |b|
        task = e2e.wait_for_task(b["task_id"], timeout: 30)
        assert_equal "complete", task["status"], JSON.pretty_generate(task)
      end
    end
    refute e2e.libtasker_loaded?(master), "the Puma master loaded libtasker"
    assert_equal workers.sort, e2e.children(master).sort, "a worker died"
  end

  # The guard of config/puma.rb: when something loads libtasker while the
  # app boots (here an initializer pings the core), the preloading master
  # must not fork workers that would inherit a Go runtime. Puma 5 ignores an
  # exception raised in before_fork (it logs a warning and forks);
  # TaskerCore::Rails.before_fork! exits instead.
  def test_puma_master_that_loaded_libtasker_refuses_to_fork
    _port, pid, log = e2e.start_puma(extra_env: { "TASKER_PING_AT_BOOT" => "1" }, wait: false)
    status = nil
    wait_until("Puma to refuse to start (log: #{log})", timeout: 40) { status = Process.waitpid2(pid, Process::WNOHANG)&.last }
    out = File.read(log)
    refute status.success?, out
    assert_includes out, "libtasker (the embedded Go core) was loaded in process #{pid}"
    refute_match(/Worker \d+ \(PID: \d+\) booted/, out)
  end

  def test_retryable_error_reenqueues_the_task_with_a_delay
    task_id, = create_task("flaky_payment", { "order_id" => 8 })
    task = e2e.wait_for_task(task_id, timeout: 40)

    assert_equal "complete", task["status"], JSON.pretty_generate(task)
    charge = task["steps"].find { |s| s["name"] == "charge_card" }
    assert_equal 2, charge["attempts"]
    assert_equal({ "charged_cents" => 4200, "attempt" => 2 }, charge["results"])

    runs = e2e.handled(task_id).sort_by { |r| r["started"] }
    assert_operator runs.size, :>=, 2, runs.inspect
    assert(runs.all? { |r| r["sidekiq"] && r["pid"] == e2e.sidekiq_pid }, runs.inspect)
    first = runs.first
    assert_equal "retry_viable", first["outcome"], "the first run should end waiting for the retry: #{runs.inspect}"
    later = runs.drop(1).find { |r| r["status"] == "complete" }
    refute_nil later, runs.inspect
    # set(wait: 2) on task.reenqueue: the second run starts no sooner than the
    # delay the step asked for (less the time the first run took to finish).
    assert_operator later["started"] - first["finished"], :>=, 1.5, runs.inspect
  end

  # Issue 15 item 4: step handlers that use ActiveRecord, Sidekiq -c 5, a
  # pool of 5 connections, 4 parallel steps per task, 50 tasks. Each handler
  # call runs in the Rails executor, so its connection goes back to the pool
  # after the step: every task completes, every step on its first attempt.
  # (TASKER_WRAP_HANDLERS=0 turns the executor off: the negative control,
  # which fails with ActiveRecord::ConnectionTimeoutError retries.)
  def test_active_record_handlers_share_a_small_pool
    count = Integer(ENV.fetch("TASKER_E2E_AR_TASKS", "50"))
    out = e2e.rails_runner("script/create_tasks.rb", "shop", "ledger", count.to_s)
    res = JSON.parse(out.lines.last)
    ids = res.fetch("task_ids")
    assert_equal count, ids.uniq.size

    failures = []
    ids.each do |id|
      task = e2e.wait_for_task(id, timeout: 90)
      bad = task["steps"].reject { |st| st["status"] == "complete" && st["attempts"] == 1 }
      failures << { task_id: id, status: task["status"], steps: bad.map { |st| st.slice("name", "status", "attempts", "error") } } if
        task["status"] != "complete" || bad.any?
    end
    assert_empty failures, "tasks with failed or retried steps:\n#{JSON.pretty_generate(failures.first(3))}"

    rows = e2e.sql("SELECT task_id, count(*) AS n, sum(amount_cents) AS total FROM ledger_entries " \
                   "WHERE task_id = ANY($1::bigint[]) GROUP BY task_id", ["{#{ids.join(',')}}"])
    assert_equal count, rows.size
    assert(rows.all? { |r| r["n"].to_i == 4 && r["total"].to_i == 1300 }, rows.first(3).inspect)
    totals = ids.map { |id| e2e.task(id)["steps"].find { |st| st["name"] == "total" }["results"] }
    assert_equal [{ "total_cents" => 1300 }], totals.uniq
    log = File.read(File.join(e2e.tmp, "sidekiq.log"))
    refute_match(/ConnectionTimeoutError/, log)
  end

  def test_republisher_pushes_a_task_whose_job_was_never_enqueued
    # The creating process does not subscribe: as if it died between the
    # core's commit and perform_later.
    task_id, = create_task("order_fulfillment", { "order_id" => 9 }, extra_env: { "TASKER_ENQUEUE_SUBSCRIBER" => "0" })
    record = e2e.queue_record(task_id)
    refute_nil record, "the core wrote no durable queue record"
    assert_equal "enqueue", record["operation"]

    task = e2e.wait_for_task(task_id, timeout: 30)
    assert_equal "complete", task["status"], JSON.pretty_generate(task)
    runs = e2e.handled(task_id)
    refute_empty runs
    assert(runs.all? { |r| r["lease_owner"].to_s.start_with?("rails-republisher:") }, runs.inspect)
    assert(runs.all? { |r| r["sidekiq"] }, runs.inspect)
    assert_nil e2e.queue_record(task_id), "the re-published record was not acked"
    # The gem logs through Rails.logger, tagged.
    assert_match(/\[tasker\] re-published \d+ task\(s\) from the durable queue: .*\b#{task_id}\b/,
                 File.read(e2e.env["RAILS_LOG"]))
  end
end

# The Railtie and the generators, in the same app.
class RailsBootAndGeneratorTest < Minitest::Test
  APP = RailsE2E::APP

  def runner(dir, code, env = {})
    base = { "RAILS_ENV" => "test", "RAILS_LOG" => File::NULL, "TASKER_DATABASE_URL" => "sqlite:#{Dir.tmpdir}/unused.db" }
    %w[TASKER_LIBRARY_PATH].each { |k| base[k] = ENV[k] if ENV[k] }
    out, err, st = RailsE2E.capture3(base.merge(env), RbConfig.ruby, "bin/rails", "runner", code, chdir: dir)
    assert st.success?, "bin/rails runner failed:\n#{out}\n#{err}"
    out
  end

  def test_boot_loads_nothing_native
    out = runner(APP, <<~RUBY)
      maps = File.read("/proc/self/maps")
      puts({ libtasker: maps.include?("libtasker"), subscriber: TaskerCore::Rails::EnqueueSubscriber.installed?,
             templates_dir: Rails.application.config.tasker.templates_dir }.to_json)
    RUBY
    res = JSON.parse(out.lines.last)
    refute res["libtasker"], "booting the app loaded libtasker"
    assert res["subscriber"]
    assert_equal File.join(APP, "config/tasker/tasks"), res["templates_dir"]
  end

  def test_generators_write_a_valid_template_and_loadable_handlers
    Dir.mktmpdir("tasker-gen") do |tmp|
      app = File.join(tmp, "app")
      FileUtils.cp_r(APP, app)
      FileUtils.rm_rf([File.join(app, "config/initializers/tasker.rb"), File.join(app, "config/tasker"),
                       File.join(app, "app/tasks")])
      File.write(File.join(app, "config/boot.rb"), "$LOAD_PATH.unshift #{File.expand_path('../../lib', __dir__).inspect}\n")
      gen = lambda do |*args|
        out, st = Open3.capture2e({ "RAILS_ENV" => "test", "RAILS_LOG" => File::NULL }, RbConfig.ruby, "bin/rails", "generate",
                                  *args, chdir: app)
        assert st.success?, out
        out
      end
      # The generators live in the TaskerCore namespace; the old tasker:*
      # names still work.
      gen.call("tasker_core:install")
      gen.call("tasker_core:task", "billing/invoice", "collect", "send_invoice", "--parallel")
      gen.call("tasker:task", "billing/refund", "refund")
      %w[config/initializers/tasker.rb config/tasker/tasks/example/hello_world.yaml config/tasker/tasks/billing/invoice.yaml
         app/tasks/example/hello_world_handler.rb app/tasks/example/hello_world/say_hello_handler.rb
         app/tasks/billing/invoice/send_invoice_handler.rb config/tasker/tasks/billing/refund.yaml
         app/tasks/billing/refund/refund_handler.rb].each { |f| assert File.exist?(File.join(app, f)), "#{f} missing" }

      out, st = Open3.capture2e(ENV.fetch("TASKER_BIN"), "template", "validate", File.join(app, "config/tasker/tasks"))
      assert st.success?, out
      assert_includes out, "3 templates OK"

      res = runner(app, <<~RUBY)
        puts [Example::HelloWorldHandler.superclass.name, Example::HelloWorld::SayGoodbyeHandler.superclass.name,
              Billing::Invoice::SendInvoiceHandler.new.process(nil, nil, nil)].to_json
      RUBY
      assert_equal ["TaskerCore::BaseTaskHandler", "TaskerCore::BaseStepHandler", { "send_invoice" => "done" }],
                   JSON.parse(res.lines.last)
    end
  end

  def rails_cmd(env, *args, dir: APP)
    base = { "RAILS_ENV" => "test", "RAILS_LOG" => File::NULL }
    %w[TASKER_LIBRARY_PATH].each { |k| base[k] = ENV[k] if ENV[k] }
    Open3.capture2e(base.merge(env), RbConfig.ruby, "bin/rails", *args, chdir: dir)
  end

  # The embedded core's log goes to Rails.logger, tagged: a lease the core
  # rescues (logged at info) shows up in the app's log as
  # "[tasker] [core] rescued step with expired lease ... task_id=N".
  def test_core_log_lines_reach_the_rails_log_tagged
    Dir.mktmpdir("tasker-core-log") do |dir|
      log = File.join(dir, "rails.log")
      env = { "TASKER_DATABASE_URL" => "sqlite:#{File.join(dir, 'tasker.db')}", "TASKER_ENQUEUE_SUBSCRIBER" => "0",
              "RAILS_LOG" => log }
      out, st = rails_cmd(env, "runner", <<~RUBY)
        TaskerCore.configure do |c|
          c.core_log_level = "info"
          c.step_lease_ms = 100
          c.rescue_interval_ms = -1
        end
        id = TaskerCore.create_task("shop/flaky_payment", { "order_id" => 1 }).task_id
        TaskerCore.client.claim_steps(id, owner: "gone")
        deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 20
        until TaskerCore.client.rescue_expired["rescued"].positive?
          raise "the lease was never rescued" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

          sleep 0.05
        end
        TaskerCore.reset! # closes the engine: the records not drained yet are written
        puts id
      RUBY
      assert st.success?, out
      id = Integer(out.lines.last)
      lines = File.readlines(log).grep(/rescued step with expired lease/)
      assert lines.any? { |l| l.match?(/\[tasker\] \[core\] rescued step with expired lease .*task_id=#{id}\b/) },
             "no tagged core line in the Rails log:\n#{File.read(log)}"
    end
  end

  # The README opens with a complete template: it must stay valid.
  def test_readme_template_is_valid
    readme = File.read(File.expand_path("../../README.md", __dir__))
    yaml = readme[/^## A task template\n.*?^```yaml\n(.*?)^```/m, 1]
    refute_nil yaml, "README.md does not open with a template"
    assert_includes yaml, "environments:"
    Dir.mktmpdir("tasker-readme") do |dir|
      File.write(File.join(dir, "order_fulfillment.yaml"), yaml)
      out, st = Open3.capture2e(ENV.fetch("TASKER_BIN"), "template", "validate", dir)
      assert st.success?, out
      assert_includes out, "1 template OK"
    end
  end

  # Issue 15 item 6: rails tasker:validate loads the app's templates without
  # a database, and reports a broken one by file.
  def test_rake_tasker_validate
    out, st = rails_cmd({ "TASKER_DATABASE_URL" => "postgres://nowhere.invalid/x" }, "tasker:validate")
    assert st.success?, out
    assert_includes out, "3 template(s) OK in #{File.join(APP, 'config/tasker/tasks')}"

    Dir.mktmpdir("tasker-bad-templates") do |dir|
      File.write(File.join(dir, "broken.yaml"), "name: broken\nnamespace_name: shop\nversion: 1.0.0\nstep_templates:\n" \
                                                "  - name: a\n    handler_class: A\n    depends_on_step: nowhere\n")
      out, st = rails_cmd({ "TASKER_TEMPLATES_DIR" => dir }, "tasker:validate")
      refute st.success?, out
      assert_match(/tasker:validate: .*broken\.yaml/, out)
      assert_includes out, "nowhere"
    end
  end

  # rails tasker:migrate on an empty database, then a task that waits for a
  # retry, shown by rails tasker:explain[ID].
  def test_rake_tasker_migrate_and_explain
    base = ENV.fetch("TEST_DATABASE_URL")
    name = "tasker_rails_rake_#{Process.pid}_#{SecureRandom.hex(3)}"
    PG.connect(base).tap { |c| c.exec("CREATE DATABASE #{name}") }.close
    uri = URI.parse(base)
    uri.path = "/#{name}"
    env = { "TASKER_DATABASE_URL" => uri.to_s, "TASKER_ENQUEUE_SUBSCRIBER" => "0" }

    # (Several rake tasks per command: one Rails boot each.)
    out, st = rails_cmd(env, "tasker:migrate", "tasker:migrate:status")
    assert st.success?, out
    assert_match(/tasker migrate up: \d+ migration\(s\)/, out)
    assert_match(/tasker migrate status: \d+ migration\(s\)/, out)
    refute_match(/Applied=false/, out)

    out, st = rails_cmd(env, "runner", <<~RUBY)
      req = TaskerCore::TaskRequest.new(namespace: "shop", name: "flaky_payment", context: { "order_id" => 3 })
      id = TaskerCore.client.initialize_task(req)["task"]["task_id"]
      TaskerCore::Rails.handle(id)
      puts id
    RUBY
    assert st.success?, out
    id = Integer(out.lines.last)
    out, st = rails_cmd(env, "tasker:explain[#{id}]")
    assert st.success?, out
    assert_includes out, "task #{id} shop/flaky_payment 1.0.0: waiting_for_retry"
    assert_match(/prepare_charge\s+complete\s+attempts 1\/3/, out)
    assert_match(/charge_card\s+waiting_for_retry\s+attempts 1\/3\s+next retry \d{4}-/, out)
    assert_includes out, "error: TaskerCore::RetryableError: gateway busy (429)"
    assert_match(/attempt 1 \S+ ruby-\S+ -> waiting_for_retry: TaskerCore::RetryableError: gateway busy \(429\)/, out)
    out, st = rails_cmd(env, "tasker:explain[#{id + 1000}]")
    refute st.success?, out
    assert_includes out, "tasker:explain:"
  ensure
    PG.connect(base).tap { |c| c.exec("DROP DATABASE IF EXISTS #{name} WITH (FORCE)") }.close if name
  end
end
