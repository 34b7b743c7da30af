# frozen_string_literal: true

require_relative "test_helper"

# The socket transport sends a call again after a dropped connection only
# when that is safe: a task creation must not create two tasks then, and a
# claim (or queue_claim, events_poll) is not sent again at all.
class SocketRetryTest < RbTestCase
  # An HTTP proxy in front of `tasker serve` that forwards every request
  # and, for the first `drop` calls of `method` (initialize_task by default)
  # after the first `pass` of them, closes the client's connection without
  # the answer (after the server carried the call out). bodies: the params
  # of those calls.
  class DroppingProxy
    attr_reader :bodies, :url

    def initialize(target, drop: 1, method: "initialize_task", pass: 0)
      @target = URI(target)
      @drop = drop
      @pass = pass
      @method = method
      @bodies = []
      @lock = Mutex.new
      @server = TCPServer.new("127.0.0.1", 0)
      @url = "http://127.0.0.1:#{@server.addr[1]}"
      @thread = Thread.new { loop { serve(@server.accept) } rescue IOError }
    end

    def close
      @server.close
      @thread.join(2)
    end

    private

    def serve(sock)
      Thread.new do
        loop do
          line = sock.gets or break
          method, path = line.split
          headers = {}
          while (h = sock.gets) && h != "\r\n"
            k, v = h.split(":", 2)
            headers[k.downcase] = v.strip
          end
          body = sock.read(headers["content-length"].to_i)
          req = Net::HTTP::Post.new(path)
          headers.each { |k, v| req[k] = v unless %w[host content-length connection].include?(k) }
          req.body = body
          res = Net::HTTP.start(@target.host, @target.port) { |http| http.request(req) }
          drop = false
          if path.end_with?("/#{@method}")
            @lock.synchronize do
              @bodies << JSON.parse(body)
              if @pass.positive?
                @pass -= 1
              else
                drop = @drop.positive? && (@drop -= 1) >= 0
              end
            end
          end
          break if drop # the server created the task; the client never hears

          sock.write("HTTP/1.1 #{res.code} #{res.message}\r\nContent-Type: application/json\r\n" \
                     "Content-Length: #{res.body.bytesize}\r\n\r\n#{res.body}")
          raise "unexpected #{method}" unless method == "POST"
        end
      rescue IOError, SystemCallError
        nil
      ensure
        sock.close
      end
    end
  end

  def setup
    super
    skip "socket transport only" unless RbTest::TRANSPORT == :socket
  end

  def client_through(proxy)
    cfg = TaskerCore::Configuration.new
    cfg.transport = :socket
    cfg.server_url = proxy.url
    cfg.call_timeout = 10
    TaskerCore::Client.new(cfg)
  end

  # The tasks of the noop template whose context carries marker.
  def tasks_marked(marker)
    uri = URI("#{TaskerCore.config.server_url}/v1/tasks?namespace=rbtest&name=noop&limit=500")
    doc = JSON.parse(Net::HTTP.get(uri))
    doc.fetch("tasks").select { |t| t["context"].is_a?(Hash) && t["context"]["marker"] == marker }
  end

  def test_a_dropped_create_is_retried_with_the_same_generated_key
    proxy = DroppingProxy.new(TaskerCore.config.server_url)
    client = client_through(proxy)
    marker = SecureRandom.hex(6)
    res = client.initialize_task(TaskerCore::TaskRequest.new(namespace: "rbtest", name: "noop",
                                                             context: { "marker" => marker }))
    assert_equal 2, proxy.bodies.size, "the create was not sent again after the dropped connection"
    keys = proxy.bodies.map { |b| b["idempotency_key"] }
    refute_nil keys.first, "no idempotency key was generated"
    assert_equal keys.first, keys.last, "the retry carried another key"
    assert_equal true, res["created"], "the caller's create did create the task"
    assert_equal 1, tasks_marked(marker).size, "the retried create made a second task"
    assert_equal keys.first, res["task"]["idempotency_key"]
  ensure
    client&.close
    proxy&.close
  end

  def test_the_callers_key_is_kept_and_each_call_gets_its_own
    proxy = DroppingProxy.new(TaskerCore.config.server_url, drop: 0)
    client = client_through(proxy)
    mine = "mine-#{SecureRandom.hex(4)}"
    a = client.initialize_task(TaskerCore::TaskRequest.new(namespace: "rbtest", name: "noop", idempotency_key: mine))
    b = client.initialize_task(TaskerCore::TaskRequest.new(namespace: "rbtest", name: "noop"))
    c = client.initialize_task("namespace" => "rbtest", "name" => "noop", "idempotency_key" => nil)
    assert_equal mine, proxy.bodies[0]["idempotency_key"]
    refute_equal proxy.bodies[1]["idempotency_key"], proxy.bodies[2]["idempotency_key"]
    assert [a, b, c].all? { |r| r["created"] }
    assert_equal 3, [a, b, c].map { |r| r["task"]["task_id"] }.uniq.size
  ensure
    client&.close
    proxy&.close
  end

  def test_a_dropped_claim_is_not_sent_again
    id = RbTest.create_task("noop")["task_id"]
    proxy = DroppingProxy.new(TaskerCore.config.server_url, method: "claim_steps")
    client = client_through(proxy)
    err = assert_raises(TaskerCore::ConnectionLostError) { client.claim_steps(id, owner: "w-#{SecureRandom.hex(3)}") }
    assert_kind_of TaskerCore::ConnectionError, err
    assert_equal "claim_steps", err.rpc_method
    assert_match(/claim_steps is not safe to repeat/, err.message)
    assert_equal 1, proxy.bodies.size, "the claim was sent again"
    # The steps the lost claim took are leased; nothing else was claimed.
    states = RbTest.steps(id).values.map { |st| st["status"] }
    assert_equal %w[in_progress], states.uniq
    # The next call opens a new connection.
    assert_equal id, client.task(id)["task"]["task_id"]
  ensure
    client&.close
    proxy&.close
  end

  def test_dropped_queue_claim_and_events_poll_are_not_sent_again
    { "queue_claim" => ->(c) { c.queue_claim(owner: "rb-#{SecureRandom.hex(3)}", limit: 1, lease_seconds: 1) },
      "events_poll" => ->(c) { c.events_poll(c.events_subscribe(kinds: ["task.completed"])["subscription_id"]) } }
      .each do |method, send_call|
      proxy = DroppingProxy.new(TaskerCore.config.server_url, method: method)
      client = client_through(proxy)
      assert_raises(TaskerCore::ConnectionLostError, method) { send_call.call(client) }
      assert_equal 1, proxy.bodies.size, "#{method} was sent again"
    ensure
      client&.close
      proxy&.close
    end
  end

  # Reads and the calls that are safe to repeat are still sent again.
  def test_idempotent_calls_are_sent_again
    id = RbTest.create_task("noop")["task_id"]
    %w[task report_results].each do |method|
      proxy = DroppingProxy.new(TaskerCore.config.server_url, method: method)
      client = client_through(proxy)
      if method == "task"
        assert_equal id, client.task(id)["task"]["task_id"]
      else
        res = client.report_results(id, owner: "nobody", results: [{ "step_id" => 1, "attempt" => 1, "success" => true }])
        assert_kind_of Array, res["results"]
      end
      assert_equal 2, proxy.bodies.size, "#{method} was not sent again"
    ensure
      client&.close
      proxy&.close
    end
  end

  # A worker whose claim is lost gets a TaskerCore::ConnectionError out of
  # handle (a TaskerCore::Error, which a job backend retries), not a second
  # claim.
  def test_a_lost_claim_fails_handle_with_a_connection_error
    id = RbTest.create_task("noop")["task_id"]
    proxy = DroppingProxy.new(TaskerCore.config.server_url, method: "claim_steps")
    client = client_through(proxy)
    coordinator = TaskerCore::Coordinator.new(client: client, owner: "w-#{SecureRandom.hex(3)}")
    assert_raises(TaskerCore::ConnectionError) { coordinator.handle(id) }
    assert_equal 1, proxy.bodies.size
  ensure
    client&.close
    proxy&.close
  end

  # A claim lost while other attempts run does not lose their results: the
  # coordinator reports them first (the Go coordinator does the same) and
  # only a claim failing with nothing running fails handle.
  def test_a_claim_lost_while_steps_run_reports_them_first
    id = RbTest.create_task("claimgap")["task_id"]
    proxy = DroppingProxy.new(TaskerCore.config.server_url, method: "claim_steps", pass: 1)
    client = client_through(proxy)
    coordinator = TaskerCore::Coordinator.new(client: client, owner: "w-#{SecureRandom.hex(3)}")
    res = coordinator.handle(id)
    refute_nil res["outcome"]
    slow = RbTest.steps(id).fetch("slow")
    assert_equal "complete", slow["status"], "the running step's result was lost with the claim"
    assert_equal 1, slow["attempts"]
  ensure
    client&.close
    proxy&.close
  end
end
