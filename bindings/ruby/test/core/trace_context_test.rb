# frozen_string_literal: true

require_relative "test_helper"
require "stringio"
require "tasker_core/rails/trace_context_middleware"

module RbTest
  # Records what a step handler sees of the trace context.
  class TraceRecordingHandler < TaskerCore::BaseStepHandler
    def process(task, _sequence, step)
      Recorder.record(task_id: task.task_id, step: step.name, traceparent: step.traceparent,
                      current: TaskerCore::TraceContext.current)
      { "seen" => step.traceparent }
    end
  end

  # An HTTP server on a TCPServer that records each request (line, headers,
  # body) and answers with the next canned response, else 200 "{}".
  class RecordingServer
    Request = Struct.new(:line, :headers, :body)
    attr_reader :port, :requests

    def initialize(responses = [])
      @responses = responses
      @requests = Queue.new
      @server = TCPServer.new("127.0.0.1", 0)
      @port = @server.addr[1]
      @thread = Thread.new { serve }
    end

    def url(path = "/")
      "http://127.0.0.1:#{@port}#{path}"
    end

    def close
      @server.close
      @thread.kill
    end

    private

    def serve
      loop do
        client = @server.accept
        line = client.gets.to_s.chomp
        headers = {}
        while (h = client.gets) && h != "\r\n"
          name, value = h.chomp.split(":", 2)
          (headers[name.downcase] ||= []) << value.to_s.strip
        end
        body = client.read(headers.fetch("content-length", ["0"]).first.to_i).to_s
        @requests << Request.new(line, headers, body)
        status, extra, text = @responses.shift || [200, [%w[Content-Type application/json]], "{}"]
        head = +"HTTP/1.1 #{status} X\r\nContent-Length: #{text.bytesize}\r\nConnection: close\r\n"
        extra.each { |k, v| head << "#{k}: #{v}\r\n" }
        client.write("#{head}\r\n#{text}")
        client.close
      end
    rescue IOError, Errno::EBADF
      nil
    end
  end

  # A stand-in for the opentelemetry-api gem (not installed here): the
  # parts the gem uses (Context.current / with_current, the W3C
  # TraceContext propagator's inject / extract), with the same signatures
  # and semantics; a context holds a span context as a traceparent String.
  module FakeOpenTelemetry
    SOURCE = <<~RUBY
      module ::OpenTelemetry
        class Context
          attr_reader :traceparent

          def initialize(traceparent = nil)
            @traceparent = traceparent
          end

          def self.current
            Thread.current[:fake_otel_context] || ROOT
          end

          def self.with_current(ctx)
            prev = Thread.current[:fake_otel_context]
            Thread.current[:fake_otel_context] = ctx
            yield ctx
          ensure
            Thread.current[:fake_otel_context] = prev
          end

          ROOT = new
        end

        module Trace
          module Propagation
            module TraceContext
              class TextMapPropagator
                def inject(carrier, context: ::OpenTelemetry::Context.current, setter: nil)
                  carrier["traceparent"] = context.traceparent if context.traceparent
                  nil
                end

                def extract(carrier, context: ::OpenTelemetry::Context.current, getter: nil)
                  tp = carrier["traceparent"]
                  tp ? ::OpenTelemetry::Context.new(tp) : context
                end
              end

              def self.text_map_propagator
                @propagator ||= TextMapPropagator.new
              end
            end
          end
        end
      end
    RUBY

    # false when a real OpenTelemetry is loaded (it is left alone).
    def self.install
      return false if defined?(::OpenTelemetry)

      eval(SOURCE, TOPLEVEL_BINDING) # rubocop:disable Security/Eval -- a test double defined at top level
      @installed = true
    end

    def self.uninstall
      Object.send(:remove_const, :OpenTelemetry) if @installed && defined?(::OpenTelemetry)
      @installed = false
      Thread.current[:fake_otel_context] = nil
    end
  end
end

# TaskerCore::TraceContext: parsing, the current value, its propagation
# into created tasks and to step handlers, the Rack middleware, and the
# OpenTelemetry branch (with a fake of its API).
class TraceContextTest < RbTestCase
  TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
  TP2 = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
  TC = TaskerCore::TraceContext

  def teardown
    RbTest::FakeOpenTelemetry.uninstall
    TC.restore(nil)
    TaskerCore.config.propagate_trace_context = true
  end

  def test_parse_is_strict_w3c
    assert_equal TP, TC.parse(TP)
    assert_equal TP, TC.parse("  #{TP}\t"), "surrounding blanks are ignored"
    assert_equal TP, TC.parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"),
                 "a later version's extra fields are dropped, written as version 00"
    assert_equal TP, TC.parse("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    [
      nil, "", 42, "garbage",
      TP.upcase,                                                  # uppercase hex
      "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  # uppercase trace id
      "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent id
      "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
      "0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",   # short version
      "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",   # short trace id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",   # short parent id
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",   # short flags
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",  # flags not hex
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", # version 00 has exactly four fields
      "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",  # separators
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902g7-01",  # not hex
      "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", # a later version: a field follows a "-"
      "#{TP},#{TP2}"                                              # two headers joined
    ].each { |bad| assert_nil TC.parse(bad), "#{bad.inspect} is not a valid traceparent" }
  end

  def test_with_sets_current_for_the_block_nests_and_restores
    assert_nil TC.current
    seen = TC.with(TP) do
      inner = TC.with(TP2) { TC.current }
      assert_equal TP, TC.current, "the outer value is back after the inner block"
      [inner, TC.current, Thread.new { TC.current }.value]
    end
    assert_equal [TP2, TP, nil], seen, "nested value, outer value, nothing in another thread"
    assert_nil TC.current
    assert_raises(RuntimeError) { TC.with(TP) { raise "boom" } }
    assert_nil TC.current, "restored after an exception"
    assert_nil(TC.with("not-a-traceparent") { TC.current }, "an invalid value is ignored")
    assert_nil(TC.with(TP) { TC.with(nil) { TC.current } }, "with(nil) runs without a trace context")
  end

  def test_create_task_tags_the_task_with_the_current_trace_context
    task = TC.with(TP) { TaskerCore.create_task("rbtest/noop") }
    assert_includes task.tags, "traceparent:#{TP}"
    assert_equal TP, task.traceparent
    assert_equal TP, TaskerCore.task(task.id).traceparent, "stored with the task"

    plain = TaskerCore.create_task("rbtest/noop", {}, tags: ["team:ops"])
    assert_equal ["team:ops"], plain.tags, "no trace context, no tag"
    assert_nil plain.traceparent

    own = TC.with(TP) { TaskerCore.create_task("rbtest/noop", {}, tags: ["traceparent:#{TP2}", "x"]) }
    assert_equal ["traceparent:#{TP2}", "x"], own.tags, "the caller's own tag wins"

    TaskerCore.config.propagate_trace_context = false
    off = TC.with(TP) { TaskerCore.create_task("rbtest/noop") }
    assert_nil off.traceparent, "propagate_trace_context = false adds nothing"
  end

  def test_client_initialize_task_tags_hash_and_task_request_forms
    request = TaskerCore::TaskRequest.new(namespace: "rbtest", name: "noop", tags: ["a"])
    res = TC.with(TP) { TaskerCore.client.initialize_task(request) }
    assert_equal ["a", "traceparent:#{TP}"], res["task"]["tags"]
    assert_equal ["a"], request.tags, "the caller's request is not modified"

    hash = { namespace: "rbtest", name: "noop", context: {} }
    res = TC.with(TP2) { TaskerCore.client.initialize_task(hash) }
    assert_equal ["traceparent:#{TP2}"], res["task"]["tags"]
    refute hash.key?(:tags)

    res = TC.with(TP) { TaskerCore::BaseTaskHandler.new.initialize_task({ "namespace" => "rbtest", "name" => "noop" }) }
    assert_equal ["traceparent:#{TP}"], res["tags"]
  end

  def test_step_handlers_get_the_steps_traceparent
    server = RbTest::RecordingServer.new
    task = TC.with(TP) { TaskerCore.create_task("rbtest/traced", { "url" => server.url("/charge") }) }
    assert_nil TC.current
    res = RbTest.run_task(task.id)
    assert_equal "complete", res["status"]
    call = RbTest::Recorder.calls(task.id).find { |c| c[:step] == "record" }
    # With tracing off (no exporter in this process or the server) the
    # core hands on the creator's traceparent; with an exporter it would
    # name the attempt's span in the same trace.
    assert_equal TP, call[:traceparent], "step.traceparent"
    assert_equal TP, call[:current], "TraceContext.current while the handler runs"
    req = Timeout.timeout(5) { server.requests.pop }
    assert_equal [TP], req.headers["traceparent"], "ApiStepHandler sends the step's traceparent"

    plain = TaskerCore.create_task("rbtest/traced", { "url" => server.url("/charge") })
    RbTest.run_task(plain.id)
    call = RbTest::Recorder.calls(plain.id).find { |c| c[:step] == "record" }
    assert_nil call[:traceparent]
    assert_nil call[:current]
    assert_nil Timeout.timeout(5) { server.requests.pop }.headers["traceparent"]
  ensure
    server&.close
  end

  def test_step_from_the_claim_document
    assert_equal TP, TaskerCore::Step.new("step_id" => 1, "traceparent" => TP).traceparent
    assert_nil TaskerCore::Step.new("step_id" => 1).traceparent
    assert_nil TaskerCore::Step.new("step_id" => 1, "traceparent" => "bogus").traceparent
    seen = nil
    TaskerCore.register_step_handler("trace:probe", Class.new(TaskerCore::BaseStepHandler) do
      define_method(:process) { |_t, _s, _st| seen = TaskerCore::TraceContext.current }
    end)
    step = TaskerCore::Step.new("step_id" => 1, "attempt" => 1, "handler_class" => "trace:probe", "traceparent" => TP2)
    out = TaskerCore::StepHandlers.run(nil, step, [step])
    assert out["success"], out.inspect
    assert_equal TP2, seen
    assert_nil TC.current
  end

  def test_middleware_sets_the_requests_trace_context_and_clears_it
    seen = []
    app = ->(_env) { seen << TC.current; [200, {}, ["ok"]] }
    mw = TaskerCore::Rails::TraceContextMiddleware.new(app)
    mw.call("HTTP_TRACEPARENT" => TP)
    assert_nil TC.current, "cleared after the request"
    mw.call("HTTP_TRACEPARENT" => TP.upcase)
    mw.call({})
    assert_equal [TP, nil, nil], seen

    boom = TaskerCore::Rails::TraceContextMiddleware.new(->(_env) { raise "boom" })
    assert_raises(RuntimeError) { boom.call("HTTP_TRACEPARENT" => TP) }
    assert_nil TC.current, "cleared after an exception"

    creating = TaskerCore::Rails::TraceContextMiddleware.new(lambda do |_env|
      [201, {}, [TaskerCore.create_task("rbtest/noop").id.to_s]]
    end)
    _, _, body = creating.call("HTTP_TRACEPARENT" => TP2)
    assert_equal TP2, TaskerCore.task(Integer(body.first)).traceparent, "a task created by the request carries it"
  end

  def test_opentelemetry_current_context_wins_when_loaded
    skip "a real OpenTelemetry is loaded in this process" unless RbTest::FakeOpenTelemetry.install
    assert TC.otel?
    assert_nil TC.current, "no span, no local value"
    assert_equal TP, TC.with(TP) { TC.current }
    # A span of OpenTelemetry's (an instrumented request's server span).
    span = ::OpenTelemetry::Context.new(TP2)
    got = ::OpenTelemetry::Context.with_current(span) { [TC.current, TC.with(TP) { TC.current }] }
    assert_equal [TP2, TP], got, "OpenTelemetry's current span; with sets OpenTelemetry's context too"
    inside = TC.with(TP) { ::OpenTelemetry::Context.current.traceparent }
    assert_equal TP, inside, "with makes the value OpenTelemetry's current context (children of it)"

    task = ::OpenTelemetry::Context.with_current(span) { TaskerCore.create_task("rbtest/noop") }
    assert_equal TP2, task.traceparent, "create_task injects OpenTelemetry's current context"

    invalid = ::OpenTelemetry::Context.new("00-#{'0' * 32}-00f067aa0ba902b7-01")
    assert_nil(::OpenTelemetry::Context.with_current(invalid) { TC.current }, "an invalid span context is ignored")
    broken = ::OpenTelemetry::Trace::Propagation::TraceContext.text_map_propagator
    def broken.inject(*) = raise("exporter bug")
    assert_equal TP, TC.with(TP) { TC.current }, "an OpenTelemetry error falls back to the gem's value"
  end
end

# TaskerCore::Rails::DashboardProxy against a real `tasker serve` (with an
# API token, so the dashboard's login, session cookie and CSRF checks are
# all in force) and against a recording server for the headers.
class DashboardProxyTest < RbTestCase
  require "tasker_core/rails/dashboard_proxy"

  TOKEN = "proxy-test-token"
  HOST = "rails.example:3000"
  ORIGIN = "https://#{HOST}"

  def setup
    super
    skip_or_fail("tasker not built: #{RbTest.tasker_bin}") unless File.executable?(RbTest.tasker_bin)
  end

  def skip_or_fail(msg)
    RbTest.skip_or_fail!(self, msg)
  end

  def env(method, path, script: "/ui", query: "", body: nil, cookie: nil, origin: nil, headers: {})
    e = { "REQUEST_METHOD" => method, "SCRIPT_NAME" => script, "PATH_INFO" => path, "QUERY_STRING" => query,
          "HTTP_HOST" => HOST, "SERVER_NAME" => "rails.example", "SERVER_PORT" => "3000", "rack.url_scheme" => "https",
          "REMOTE_ADDR" => "203.0.113.9", "rack.input" => StringIO.new(body.to_s) }
    if body
      e["CONTENT_TYPE"] = "application/x-www-form-urlencoded"
      e["CONTENT_LENGTH"] = body.bytesize.to_s
    end
    e["HTTP_COOKIE"] = cookie if cookie
    e["HTTP_ORIGIN"] = origin if origin
    headers.each { |k, v| e["HTTP_#{k.upcase.tr('-', '_')}"] = v }
    e
  end

  def header(headers, name)
    headers.find { |k, _| k.casecmp?(name) }&.last
  end

  def session_cookie(headers)
    raw = header(headers, "set-cookie")
    raw = raw.join("\n") if raw.is_a?(Array)
    line = raw.to_s.split("\n").find { |c| c.start_with?("tasker_ui_session=") }
    assert line, "a tasker_ui_session cookie in #{raw.inspect}"
    assert_match(%r{;\s*Path=/ui(;|\z)}, line, "scoped to /ui, which the proxy's mount point keeps")
    line.split(";").first
  end

  def csrf(body)
    body.join[/name="csrf" value="([^"]+)"/, 1] || flunk("no CSRF token in the page")
  end

  def start_serve
    port = RbTest.free_port
    log = File.join(RbTest::TMP, "dash-serve.log")
    db = "sqlite:#{File.join(RbTest::TMP, "dash-#{SecureRandom.hex(3)}.db")}"
    pid = Process.spawn({ "TASKER_TOKEN" => TOKEN }, RbTest.tasker_bin, "serve", "--database-url", db,
                        "--templates", RbTest::TEMPLATES, "--listen", "127.0.0.1:#{port}", "--event-enqueue",
                        "--log-level", "warn", out: log, err: log)
    url = "http://127.0.0.1:#{port}"
    deadline = Time.now + 30
    begin
      Net::HTTP.get_response(URI("#{url}/health/ready")).is_a?(Net::HTTPSuccess) || raise("not ready")
    rescue StandardError
      raise "tasker serve did not start:\n#{File.read(log)}" if Time.now > deadline || Process.waitpid(pid, Process::WNOHANG)

      sleep 0.1
      retry
    end
    [pid, url]
  end

  def api(url, method, path, body = nil)
    uri = URI("#{url}#{path}")
    req = method == :post ? Net::HTTP::Post.new(uri) : Net::HTTP::Get.new(uri)
    req["Authorization"] = "Bearer #{TOKEN}"
    if body
      req["Content-Type"] = "application/json"
      req.body = JSON.generate(body)
    end
    res = Net::HTTP.start(uri.host, uri.port) { |h| h.request(req) }
    JSON.parse(res.body)
  end

  def test_login_browse_and_act_through_the_proxy
    pid, url = start_serve
    created = api(url, :post, "/v1/tasks", { "namespace" => "rbtest", "name" => "noop" })
    id = (created["task"] || created)["task_id"]
    assert id, created.inspect
    proxy = TaskerCore::Rails::DashboardProxy.new(upstream: url)

    status, headers, = proxy.call(env("GET", "/"))
    assert_equal 303, status
    assert_equal "/ui/login?next=%2Fui%2F", header(headers, "location"), "the login redirect stays on this host"

    status, headers, body = proxy.call(env("GET", "/login", query: "next=%2Fui%2Ftasks%2F#{id}"))
    assert_equal 200, status
    anon = session_cookie(headers)
    token = csrf(body)
    assert_match(/default-src 'none'/, header(headers, "content-security-policy"))

    form = URI.encode_www_form("token" => TOKEN, "csrf" => token, "who" => "ops", "next" => "/ui/tasks/#{id}")
    status, = proxy.call(env("POST", "/login", body: form, cookie: "#{anon}; _app_session=secret",
                                                origin: "https://evil.example"))
    assert_equal 403, status, "a cross-site Origin is still refused through the proxy"

    status, headers, = proxy.call(env("POST", "/login", body: form, cookie: "#{anon}; _app_session=secret", origin: ORIGIN))
    assert_equal 303, status, "the app's own origin passes the dashboard's Origin check (X-Forwarded-Host)"
    assert_equal "/ui/tasks/#{id}", header(headers, "location")
    session = session_cookie(headers)

    status, _, body = proxy.call(env("GET", "/tasks/#{id}", cookie: session))
    assert_equal 200, status
    assert_includes body.join, "rbtest/noop"

    status, _, body = proxy.call(env("GET", "/tasks/#{id}/confirm", query: "action=cancel", cookie: session))
    assert_equal 200, status
    form = URI.encode_www_form("action" => "cancel", "csrf" => csrf(body), "reason" => "proxy test")
    status, = proxy.call(env("POST", "/tasks/#{id}/actions", body: form, cookie: session, origin: ORIGIN,
                                                              headers: { "Sec-Fetch-Site" => "cross-site" }))
    assert_equal 403, status, "Sec-Fetch-Site is passed on"
    status, headers, = proxy.call(env("POST", "/tasks/#{id}/actions", body: form, cookie: session, origin: ORIGIN))
    assert_equal 303, status
    assert_equal "/ui/tasks/#{id}?done=cancel", header(headers, "location")
    assert_equal "cancelled", api(url, :get, "/v1/tasks/#{id}")["task"]["status"]

    status, _, body = proxy.call(env("GET", "/ui/", script: "/tasker"))
    assert_equal 404, status, "mounted elsewhere than /ui it refuses, saying why"
    assert_match(/mount it at "\/ui"/, body.join)
  ensure
    if pid
      Process.kill("TERM", pid)
      Process.wait(pid)
    end
  end

  def test_headers_it_forwards_and_returns
    server = RbTest::RecordingServer.new([[303, [%w[Location /ui/], ["Set-Cookie", "tasker_ui_session=a; Path=/ui"],
                                                 ["Set-Cookie", "other=b; Path=/ui"], %w[Connection close]], ""]])
    proxy = TaskerCore::Rails::DashboardProxy.new(upstream: server.url)
    status, headers, = proxy.call(env("POST", "/tasks/1/actions", query: "x=1", body: "a=b",
                                                                  cookie: "_app_session=secret; tasker_ui_session=s1; theme=dark",
                                                                  origin: ORIGIN, headers: { "Authorization" => "Basic dXNlcjpwdw==",
                                                                                             "X-Csrf-Token" => "t" }))
    req = Timeout.timeout(5) { server.requests.pop }
    assert_equal "POST /ui/tasks/1/actions?x=1 HTTP/1.1", req.line
    assert_equal ["tasker_ui_session=s1"], req.headers["cookie"], "only the dashboard's cookie goes upstream"
    assert_nil req.headers["authorization"], "the app's Basic credentials are not forwarded"
    assert_equal [HOST], req.headers["x-forwarded-host"]
    assert_equal ["https"], req.headers["x-forwarded-proto"]
    assert_equal ["203.0.113.9"], req.headers["x-forwarded-for"]
    assert_equal [ORIGIN], req.headers["origin"]
    assert_equal ["t"], req.headers["x-csrf-token"]
    assert_equal "a=b", req.body
    assert_equal 303, status
    cookies = header(headers, "set-cookie")
    cookies = cookies.split("\n") unless cookies.is_a?(Array)
    assert_equal ["tasker_ui_session=a; Path=/ui", "other=b; Path=/ui"], cookies
    assert_nil header(headers, "connection"), "hop-by-hop headers are dropped"

    proxy.call(env("GET", "/", headers: { "Authorization" => "Bearer abc", "X-Forwarded-Host" => "public.example" }))
    req = Timeout.timeout(5) { server.requests.pop }
    assert_equal ["Bearer abc"], req.headers["authorization"], "a bearer token is forwarded"
    assert_equal ["public.example"], req.headers["x-forwarded-host"], "the host a front proxy forwarded is kept"
  ensure
    server&.close
  end

  def test_upstream_down_is_a_502
    port = RbTest.free_port
    status, _, body = TaskerCore::Rails::DashboardProxy.new(upstream: "http://127.0.0.1:#{port}").call(env("GET", "/"))
    assert_equal 502, status
    assert_match(/did not answer/, body.join)
    assert_raises(ArgumentError) { TaskerCore::Rails::DashboardProxy.new(upstream: "not a url") }
  end
end
