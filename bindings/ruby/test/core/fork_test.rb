# frozen_string_literal: true

require_relative "test_helper"
require "timeout"

# A Go runtime does not survive fork(): a child forked after libtasker was
# loaded must get TaskerCore::ForkError, quickly, instead of hanging.
class ForkTest < RbTestCase
  def wait_child(pid, seconds)
    deadline = Time.now + seconds
    loop do
      _, status = Process.waitpid2(pid, Process::WNOHANG)
      return status if status

      if Time.now > deadline
        Process.kill("KILL", pid)
        Process.wait(pid)
        flunk "forked child hung for #{seconds}s"
      end
      sleep 0.05
    end
  end

  def test_embedded_in_forked_child_raises_fork_error
    skip "embedded transport only" unless RbTest::TRANSPORT == :embedded
    TaskerCore.client.ping # loads libtasker in this process
    assert TaskerCore.native_loaded?
    reader, writer = IO.pipe
    pid = fork do
      reader.close
      begin
        TaskerCore.client.ping
        writer.write("no error")
      rescue TaskerCore::ForkError => e
        writer.write("ForkError: #{e.message}")
      rescue Exception => e # rubocop:disable Lint/RescueException
        writer.write("#{e.class}: #{e.message}")
      end
      writer.close
      exit!(0)
    end
    writer.close
    status = wait_child(pid, 20)
    msg = reader.read
    assert status.success?
    assert_match(/\AForkError: /, msg)
    assert_match(/Puma/, msg)
    assert_match(/socket/, msg)
    # The parent keeps working.
    assert TaskerCore.client.ping["pong"]
  end

  def test_socket_transport_works_in_a_forked_child
    skip "socket transport only" unless RbTest::TRANSPORT == :socket
    TaskerCore.client.ping
    refute TaskerCore.native_loaded?
    reader, writer = IO.pipe
    pid = fork do
      reader.close
      writer.write(TaskerCore.client.ping["pong"].to_s)
      writer.close
      exit!(0)
    end
    writer.close
    wait_child(pid, 20)
    assert_equal "true", reader.read
  end
end
