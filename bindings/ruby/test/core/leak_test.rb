# frozen_string_literal: true

require_relative "test_helper"

# Every string libtasker returns is read as a pointer, copied and freed:
# many embedded calls must leave RSS flat. The CI form makes
# TASKER_LEAK_CALLS calls (default 200,000); the full form is
# TASKER_LEAK_CALLS=1000000.
class LeakTest < RbTestCase
  def rss_kb
    File.read("/proc/self/status")[/^VmRSS:\s+(\d+)/, 1].to_i
  end

  def test_many_embedded_calls_keep_rss_flat
    skip "embedded transport only" unless RbTest::TRANSPORT == :embedded
    calls = Integer(ENV.fetch("TASKER_LEAK_CALLS", "200000"))
    client = TaskerCore.client
    20_000.times { client.call("ping") } # warm up: allocator, JIT-free steady state
    GC.start
    before = rss_kb
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    calls.times { client.call("ping") }
    elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0
    GC.start
    after = rss_kb
    growth = after - before
    puts format("\nleak test: %<n>d calls in %<s>.1f s (%<rate>d calls/s), RSS %<b>d kB -> %<a>d kB (%<g>+d kB)",
                n: calls, s: elapsed, rate: (calls / elapsed).round, b: before, a: after, g: growth)
    # A leak of even 16 bytes per call would add 3 MB per 200k calls.
    assert_operator growth, :<, [8 * 1024, calls * 16 / 1024].max, "RSS grew by #{growth} kB over #{calls} calls"
  end
end
