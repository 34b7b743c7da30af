# frozen_string_literal: true

require "json"
require "logger"

module TaskerCore
  # The embedded core's log, written to the gem's logger. With core_logs
  # :logger, libtasker is opened with "log_sink": "buffer": the Go core
  # keeps its log records in memory (the last 10,000) instead of writing
  # them to stderr, and this pump's thread drains them every
  # config.core_log_interval seconds (the logs_poll call) and writes each to
  # the logger at its level, as
  #
  #   [tasker] [core] rescued step with expired lease task_id=7 step=charge attempt=1
  #
  # (in Rails, Rails.logger tagged "tasker" and "core"). Go never calls into
  # Ruby: the records are pulled, like work and events. The thread starts
  # when the embedded transport opens the engine and stops when it closes
  # (the records logged meanwhile come with the close); a forked child has
  # no thread and opens no engine (ForkError). The socket transport is not
  # concerned: `tasker serve` writes its own log.
  class CoreLogs
    # Tags of a core line.
    TAGS = %w[tasker core].freeze
    # Records asked for per logs_poll call.
    BATCH = 1000

    LEVELS = { "DEBUG" => Logger::DEBUG, "INFO" => Logger::INFO, "WARN" => Logger::WARN,
               "ERROR" => Logger::ERROR }.freeze

    # The Logger severity of a core level ("WARN", "ERROR+2", ...).
    def self.severity(level)
      name = level.to_s[/\A[A-Z]+/]
      LEVELS.fetch(name) { level.to_s.start_with?("ERROR") ? Logger::ERROR : Logger::UNKNOWN }
    end

    # "msg key=value ...": values with spaces, quotes or "=" are quoted.
    def self.format(record)
      attrs = record["attrs"] || {}
      parts = [record["msg"].to_s]
      attrs.sort.each { |k, v| parts << "#{k}=#{format_value(v)}" }
      parts.join(" ")
    end

    def self.format_value(value)
      s = value.is_a?(String) ? value : JSON.generate(value)
      s.empty? || s.match?(/[\s"=]/) ? s.inspect : s
    rescue JSON::JSONError
      value.to_s.inspect
    end

    attr_reader :logger, :interval

    # poll: a callable returning a logs_poll result ({"records", "dropped"})
    # for a max; logger: where the records go.
    def initialize(logger, interval: 0.5, &poll)
      @logger = logger
      @interval = [interval.to_f, 0.01].max
      @poll = poll
      @lock = Mutex.new
      @wake = ConditionVariable.new
      @stopping = false
      @thread = nil
      @pid = nil
      @failing = false
    end

    # Starts the polling thread (once per process).
    def start
      @lock.synchronize do
        return self if @thread&.alive? && @pid == Process.pid

        @stopping = false
        @pid = Process.pid
        @thread = Thread.new { run }
        @thread.name = "tasker_core-core-logs" if @thread.respond_to?(:name=)
      end
      self
    end

    def running?
      @pid == Process.pid && @thread&.alive? ? true : false
    end

    # Stops the thread (after its current poll) and waits for it.
    def stop
      t = @lock.synchronize do
        @stopping = true
        @wake.broadcast
        @thread
      end
      t.join(5) if t && t != Thread.current && @pid == Process.pid
      @thread = nil
      self
    end

    # Polls once (more while full batches come back) and writes the
    # records; returns how many.
    def drain
      n = 0
      loop do
        res = @poll.call(BATCH)
        @failing = false
        write(res)
        got = (res["records"] || []).size
        n += got
        break if got < BATCH

        return n if @stopping
      end
      n
    end

    # Writes the records of a logs_poll (or close) answer to the logger.
    def write(res)
      return unless res.is_a?(Hash)

      (res["records"] || []).each { |rec| emit(self.class.severity(rec["level"]), self.class.format(rec)) }
      dropped = res["dropped"].to_i
      return unless dropped.positive?

      emit(Logger::WARN, "#{dropped} core log record(s) dropped: the core's buffer was full before the gem drained it")
    end

    private

    def run
      until @stopping
        begin
          drain
        rescue ForkError
          break
        rescue Error => e
          # Once per failing spell: the core is closing, or a call timed out.
          warn_once("tasker_core: polling the core's log failed: #{e.class}: #{e.message}")
        end
        @lock.synchronize { @wake.wait(@lock, @interval) unless @stopping }
      end
    end

    def warn_once(msg)
      return if @failing

      @failing = true
      @logger.warn(msg)
    rescue StandardError
      nil
    end

    # One line, tagged: through the logger's own tags (ActiveSupport's
    # TaggedLogging, or the gem's Rails TaggedLogger, which adds "tasker"
    # itself), else as a "[tasker] [core] " prefix.
    def emit(severity, text)
      l = @logger
      if l.respond_to?(:tag) && l.respond_to?(:logger) && l.tag == TAGS.first
        l.add(severity, "[#{TAGS.last}] #{text}")
      elsif l.respond_to?(:tagged)
        l.tagged(*TAGS) { l.add(severity, text) }
      else
        l.add(severity, TAGS.map { |t| "[#{t}] " }.join + text)
      end
    rescue StandardError
      nil
    end
  end
end
