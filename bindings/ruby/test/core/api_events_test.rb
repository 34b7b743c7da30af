# frozen_string_literal: true

require_relative "test_helper"

# A tiny HTTP server on a TCPServer: answers each request with the next
# canned response and records when it came.
class CannedServer
  attr_reader :port, :hits

  def initialize(responses)
    @responses = responses
    @hits = []
    @server = TCPServer.new("127.0.0.1", 0)
    @port = @server.addr[1]
    @thread = Thread.new { serve }
  end

  def url
    "http://127.0.0.1:#{@port}/charge"
  end

  def close
    @server.close
    @thread.kill
  end

  private

  def serve
    loop do
      client = @server.accept
      request_line = client.gets
      while (line = client.gets) && line != "\r\n"; end
      @hits << [request_line, Process.clock_gettime(Process::CLOCK_MONOTONIC)]
      status, headers, body = @responses.shift || [500, {}, "no more responses"]
      head = +"HTTP/1.1 #{status} X\r\nContent-Length: #{body.bytesize}\r\nConnection: close\r\n"
      headers.each { |k, v| head << "#{k}: #{v}\r\n" }
      client.write(head + "\r\n" + body)
      client.close
    end
  rescue IOError, Errno::EBADF
    nil
  end
end

class ApiStepHandlerTest < RbTestCase
  def test_retry_after_seconds_from_429_then_success
    server = CannedServer.new([[429, { "Retry-After" => "1" }, ""], [200, { "Content-Type" => "application/json" }, '{"ok":true}']])
    task = RbTest.create_task("api", context: { "url" => server.url })
    res = RbTest.run_task(task["task_id"])
    assert_equal "complete", res["status"]
    step = RbTest.steps(task["task_id"])["call"]
    assert_equal 2, step["attempts"]
    assert_equal({ "ok" => true }, step["results"])
    assert_equal 2, server.hits.size
    assert_operator server.hits[1][1] - server.hits[0][1], :>=, 0.9, "the second call came before Retry-After"
  ensure
    server&.close
  end

  def test_503_with_http_date_is_retryable
    date = (Time.now + 2).httpdate
    server = CannedServer.new([[503, { "Retry-After" => date }, ""], [200, {}, "plain"]])
    task = RbTest.create_task("api", context: { "url" => server.url })
    res = RbTest.run_task(task["task_id"])
    assert_equal "complete", res["status"]
    step = RbTest.steps(task["task_id"])["call"]
    assert_equal({ "body" => "plain" }, step["results"])
    assert_equal 2, server.hits.size
    assert_operator server.hits[1][1] - server.hits[0][1], :>=, 0.9, "the second call came before Retry-After"
  ensure
    server&.close
  end

  def test_404_is_permanent
    server = CannedServer.new([[404, {}, "missing"]])
    task = RbTest.create_task("api", context: { "url" => server.url })
    res = RbTest.run_task(task["task_id"])
    assert_equal "error", res["status"]
    step = RbTest.steps(task["task_id"])["call"]
    assert_equal 1, step["attempts"]
    assert_equal "permanent", step["error"]["kind"]
    assert_equal "TaskerCore::PermanentError", step["error"]["class"]
  ensure
    server&.close
  end

  def test_retry_after_parsing
    now = Time.utc(2026, 1, 2, 3, 4, 5)
    assert_equal 7.0, TaskerCore::ApiStepHandler.retry_after_seconds("7", now: now)
    assert_equal 30.0, TaskerCore::ApiStepHandler.retry_after_seconds((now + 30).httpdate, now: now)
    assert_equal 0.0, TaskerCore::ApiStepHandler.retry_after_seconds((now - 30).httpdate, now: now)
    assert_nil TaskerCore::ApiStepHandler.retry_after_seconds("soon", now: now)
    assert_nil TaskerCore::ApiStepHandler.retry_after_seconds(nil, now: now)
  end
end

class EventsTest < RbTestCase
  def test_events_arrive_in_order
    events = Queue.new
    sub = TaskerCore::EventPublisher.subscribe { |e| events << e }
    task = RbTest.create_task("linear")
    id = task["task_id"]
    RbTest.run_task(id)
    seen = []
    deadline = Time.now + 10
    until seen.last&.name == "task.completed" && seen.last.task_id == id
      raise "no task.completed event; saw #{seen.map(&:name)}" if Time.now > deadline

      e = begin
        events.pop(true)
      rescue ThreadError
        sleep 0.02
        next
      end
      seen << e if e.task_id == id
    end
    names = seen.map { |e| [e.name, e.step_name].compact.join(":") }
    assert_equal ["task.initialized", "task.enqueue", "task.started",
                  "step.started:a", "step.completed:a", "step.started:b", "step.completed:b",
                  "step.started:c", "step.completed:c", "step.started:d", "step.completed:d",
                  "task.completed"], names
    enqueue = seen.find { |e| e.name == "task.enqueue" }
    assert_equal id, enqueue.data["task_id"]
    assert_equal "enqueue", enqueue.data["operation"]
    assert_equal 0, enqueue.data["delay_seconds"]
  ensure
    sub&.unsubscribe
  end

  def test_reenqueue_event_carries_the_delay
    got = Queue.new
    sub = TaskerCore::EventPublisher.subscribe("task.reenqueue") { |e| got << e }
    task = RbTest.create_task("flaky")
    res = TaskerCore::BaseTaskHandler.new.handle(task["task_id"])
    assert_equal "retry_viable", res["outcome"]
    e = Timeout.timeout(10) do
      loop do
        x = got.pop
        break x if x.task_id == task["task_id"]
      end
    end
    assert_equal "reenqueue", e.data["operation"]
    assert_operator e.data["delay_seconds"], :>, 0.5
    assert_operator e.data["delay_seconds"], :<=, 1.0
    RbTest.run_task(task["task_id"])
  ensure
    sub&.unsubscribe
  end

  # Two members of one group (this process's EventPublisher and a raw core
  # subscription standing in for another process) share the events: each
  # goes to one of them, and together they see all; a block without a
  # group still sees every one.
  def test_group_members_share_events
    grouped = Queue.new
    everything = Queue.new
    group = "rbtest-#{SecureRandom.hex(3)}"
    sub = TaskerCore::EventPublisher.subscribe("task.initialized", group: group) { |e| grouped << e.task_id }
    all = TaskerCore::EventPublisher.subscribe("task.initialized") { |e| everything << e.task_id }
    assert_raises(ArgumentError) { TaskerCore::EventPublisher.subscribe("task.enqueue", group: group) { nil } }
    other = TaskerCore.client.events_subscribe(kinds: ["task.initialized"], group: group)
    assert_equal 2, other["members"]
    ids = Array.new(12) { RbTest.create_task("noop")["task_id"] }
    mine = []
    theirs = []
    deadline = Time.now + 10
    until (mine + theirs).size >= ids.size
      raise "group saw #{mine.sort} + #{theirs.sort} of #{ids}" if Time.now > deadline

      theirs.concat(TaskerCore.client.events_poll(other["subscription_id"], max: 2, wait_ms: 20)["events"].map { |e| e["task_id"] })
      mine << grouped.pop until grouped.empty?
    end
    sleep 0.3
    mine << grouped.pop until grouped.empty?
    assert_empty mine & theirs, "an event reached both members"
    assert_equal ids.sort, (mine + theirs).sort
    seen = []
    seen << everything.pop until seen.size >= ids.size
    assert_equal ids, seen.select { |id| ids.include?(id) }
  ensure
    sub&.unsubscribe
    all&.unsubscribe
    TaskerCore.client.events_unsubscribe(other["subscription_id"]) if other
  end
end
