# frozen_string_literal: true

# Issue 17 item 5 in a real (minimal, in-process) Rails application: the
# railtie inserts TaskerCore::Rails::TraceContextMiddleware, so a task
# created by a request carries the request's traceparent and its step
# handlers run under it (through TaskRunnerJob); a job of the app's with
# TaskerCore::Rails::TraceContextJob carries it to a task it creates later;
# TaskerCore::Rails::DashboardProxy mounted in the routes serves the
# dashboard of a real `tasker serve` (token, login, CSRF) on the app's host.
#
# Needs libtasker (embedded transport, SQLite) and the tasker binary:
# TASKER_LIBRARY_PATH / TASKER_BIN, else bindings/ruby/build/. Run:
#   ruby bindings/ruby/test/rails/trace_context_app_test.rb
ENV["RAILS_ENV"] ||= "test"
$LOAD_PATH.unshift File.expand_path("../../lib", __dir__)
require "minitest/autorun"
require "fileutils"
require "json"
require "logger"
require "net/http"
require "securerandom"
require "socket"
require "tmpdir"
require "uri"
require "rails"
require "action_controller/railtie"
require "active_job/railtie"
require "rack/mock"
require "tasker_core"

module TraceApp
  ROOT = File.expand_path("../../../..", __dir__)
  TMP = Dir.mktmpdir("tasker_trace_app")
  LIBRARY = ENV["TASKER_LIBRARY_PATH"] || File.join(ROOT, "bindings/ruby/build/libtasker.so")
  BIN = ENV["TASKER_BIN"] || File.join(ROOT, "bindings/ruby/build/tasker")
  TOKEN = "trace-app-token"
  MISSING = [LIBRARY, BIN].reject { |f| File.file?(f) }

  TEMPLATES = File.join(TMP, "tasks")
  FileUtils.mkdir_p(TEMPLATES)
  File.write(File.join(TEMPLATES, "traced.yaml"), <<~YAML)
    name: traced
    namespace_name: traceapp
    version: 1.0.0
    step_templates:
      - {name: first, handler_class: TraceApp::RecordHandler}
      - {name: second, handler_class: TraceApp::RecordHandler, depends_on_step: first}
  YAML

  SEEN = Queue.new

  class RecordHandler < TaskerCore::BaseStepHandler
    def process(task, _sequence, step)
      SEEN << [task.task_id, step.name, step.traceparent, TaskerCore::TraceContext.current]
      {}
    end
  end

  # Starts `tasker serve` (with a token: the dashboard's login is on) on a
  # database of its own; returns its URL.
  def self.start_serve
    port = TCPServer.open("127.0.0.1", 0) { |s| s.addr[1] }
    log = File.join(TMP, "serve.log")
    @serve = Process.spawn({ "TASKER_TOKEN" => TOKEN }, BIN, "serve", "--database-url", "sqlite:#{TMP}/serve.db",
                           "--templates", TEMPLATES, "--listen", "127.0.0.1:#{port}", "--event-enqueue",
                           "--log-level", "warn", out: log, err: log)
    url = "http://127.0.0.1:#{port}"
    deadline = Time.now + 30
    begin
      Net::HTTP.get_response(URI("#{url}/health/ready")).is_a?(Net::HTTPSuccess) || raise("not ready")
    rescue StandardError
      raise "tasker serve did not start:\n#{File.read(log)}" if Time.now > deadline || Process.waitpid(@serve, Process::WNOHANG)

      sleep 0.1
      retry
    end
    url
  end

  def self.stop_serve
    return unless @serve

    Process.kill("TERM", @serve)
    Process.wait(@serve)
  rescue Errno::ESRCH, Errno::ECHILD
    nil
  end

  UPSTREAM = MISSING.empty? ? start_serve : "http://127.0.0.1:9"

  class Application < ::Rails::Application
    config.root = TMP
    config.eager_load = false
    config.secret_key_base = "trace-app-test-only"
    config.hosts.clear
    config.logger = Logger.new(nil)
    config.cache_store = :null_store
    config.active_job.queue_adapter = :test
    config.tasker.transport = :embedded
    config.tasker.library_path = LIBRARY
    config.tasker.database_url = "sqlite:#{TMP}/app.db"
    config.tasker.templates_dir = TEMPLATES
    config.tasker.enqueue_subscriber = false
    config.tasker.instrument_events = false
    config.tasker.republisher = false
  end

  # Creates its task when it runs (in a worker), under the enqueuer's trace.
  class CreateLaterJob < ActiveJob::Base
    include TaskerCore::Rails::TraceContextJob

    def perform
      SEEN << [:created_later, TaskerCore.create_task("traceapp/traced").id]
    end
  end

  class OrdersController < ActionController::API
    def create
      render json: { id: TaskerCore.create_task("traceapp/traced").id }
    end

    def later
      CreateLaterJob.perform_later
      head :accepted
    end
  end
end

TraceApp::Application.initialize! if TraceApp::MISSING.empty?
TraceApp::Application.routes.draw do
  post "/orders" => "trace_app/orders#create"
  post "/orders/later" => "trace_app/orders#later"
  mount TaskerCore::Rails::DashboardProxy.new(upstream: TraceApp::UPSTREAM) => "/ui"
end

Minitest.after_run do
  TaskerCore.reset!
  TraceApp.stop_serve
  FileUtils.rm_rf(TraceApp::TMP)
end

class TraceContextAppTest < Minitest::Test
  include ActiveJob::TestHelper

  TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

  def setup
    skip "not built: #{TraceApp::MISSING.join(', ')}" unless TraceApp::MISSING.empty?
    TraceApp::SEEN.clear
  end

  def app
    Rack::MockRequest.new(Rails.application)
  end

  def seen(count)
    Array.new(count) { Timeout.timeout(10) { TraceApp::SEEN.pop } }
  end

  def test_the_railtie_inserts_the_middleware
    assert Rails.application.middleware.map(&:klass).include?(TaskerCore::Rails::TraceContextMiddleware),
           "TaskerCore::Rails::TraceContextMiddleware is in the app's middleware stack"
  end

  def test_a_request_traceparent_reaches_the_task_and_every_step
    res = app.post("/orders", "HTTP_TRACEPARENT" => TP)
    assert_equal 200, res.status, res.body
    id = JSON.parse(res.body)["id"]
    assert_equal TP, TaskerCore.task(id).traceparent
    assert_nil TaskerCore::TraceContext.current, "nothing left behind on the server thread"

    result = TaskerCore::Rails::TaskRunnerJob.perform_now(id)
    assert_equal "complete", result["status"]
    assert_equal [[id, "first", TP, TP], [id, "second", TP, TP]], seen(2).sort_by { |s| s[1] }

    plain = JSON.parse(app.post("/orders").body)["id"]
    assert_nil TaskerCore.task(plain).traceparent
    bad = JSON.parse(app.post("/orders", "HTTP_TRACEPARENT" => TP.upcase).body)["id"]
    assert_nil TaskerCore.task(bad).traceparent, "an invalid header is ignored"
  end

  def test_a_job_enqueued_by_the_request_creates_its_task_in_the_same_trace
    res = app.post("/orders/later", "HTTP_TRACEPARENT" => TP)
    assert_equal 202, res.status
    perform_enqueued_jobs
    tag, id = seen(1).first
    assert_equal :created_later, tag
    assert_equal TP, TaskerCore.task(id).traceparent
  end

  def test_the_dashboard_through_the_mounted_proxy
    res = app.get("/ui/")
    assert_equal 303, res.status
    assert_equal "/ui/login?next=%2Fui%2F", res.headers["Location"]

    res = app.get("/ui/login")
    assert_equal 200, res.status
    cookie = res.headers["Set-Cookie"].to_s.split("\n").find { |c| c.start_with?("tasker_ui_session=") }
    assert_match(%r{Path=/ui}, cookie)
    csrf = res.body[/name="csrf" value="([^"]+)"/, 1]
    assert csrf

    form = URI.encode_www_form("token" => TraceApp::TOKEN, "csrf" => csrf, "next" => "/ui/templates")
    res = app.post("/ui/login", input: form, "CONTENT_TYPE" => "application/x-www-form-urlencoded",
                                "HTTP_COOKIE" => cookie.split(";").first, "HTTP_ORIGIN" => "http://example.org")
    assert_equal 303, res.status, res.body
    assert_equal "/ui/templates", res.headers["Location"]
    session = res.headers["Set-Cookie"].to_s.split("\n").find { |c| c.start_with?("tasker_ui_session=") }.split(";").first

    res = app.get("/ui/templates", "HTTP_COOKIE" => session)
    assert_equal 200, res.status
    assert_includes res.body, "traceapp"
  end
end
