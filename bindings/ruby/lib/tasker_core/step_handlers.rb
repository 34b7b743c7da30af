# frozen_string_literal: true

require "json"
require "timeout"

module TaskerCore
  # Base class of Ruby step handlers. Override #process; its return value
  # (anything JSON can encode) becomes the step's results. Raise
  # RetryableError (optionally with retry_after:) or PermanentError to fail
  # the attempt; any other exception is a retryable failure that records the
  # exception's class, message and backtrace.
  class BaseStepHandler
    # The step's handler_config from the template (a Hash).
    attr_reader :config

    def initialize(config: {})
      @config = config || {}
    end

    # Runs one attempt. task is a TaskerCore::Task, sequence a
    # TaskerCore::StepSequence, step a TaskerCore::Step.
    def process(_task, _sequence, _step)
      raise NotImplementedError, "#{self.class} must implement process(task, sequence, step)"
    end

    # Optional hook: receives what #process returned and returns the results
    # to store (default: unchanged).
    def process_results(_step, process_output)
      process_output
    end
  end

  # The built-in tasker:noop handler, run in Ruby when a Ruby worker claims it.
  class NoopStepHandler < BaseStepHandler
    def process(_task, _sequence, _step)
      {}
    end
  end

  # Maps handler_class names to Ruby classes: explicit registrations first,
  # then the constant of that name.
  module StepHandlers
    @registry = { "tasker:noop" => NoopStepHandler }
    @lock = Mutex.new

    class << self
      # Extension point around each step handler call: a callable that is
      # given (task, step) and a block; it must call the block once and
      # return its value. The block resolves the handler class and runs the
      # attempt, so an error the wrapper raises is that attempt's failure.
      # The Rails integration sets it to run each call inside the Rails
      # executor (the reloader in development): ActiveRecord connections go
      # back to the pool after every step. nil: no wrapper.
      attr_accessor :around_handler

      # Registers klass (a BaseStepHandler subclass, or anything whose
      # instances respond to process) under a handler_class name.
      def register(name, klass)
        @lock.synchronize { @registry = @registry.merge(name.to_s => klass) }
      end

      def resolve(name)
        klass = @registry[name.to_s]
        return klass if klass

        begin
          klass = Object.const_get(name.to_s)
        rescue NameError
          raise PermanentError, "no Ruby step handler class #{name} (define it, or TaskerCore.register_step_handler)"
        end
        raise PermanentError, "#{name} is not a class" unless klass.is_a?(Class)

        klass
      end
    end

    # Runs one claimed step and returns its result document for report_results.
    def self.run(task, step, batch)
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      out = begin
        wrapped(task, step) do
          handler = instantiate(resolve(step.handler_class), step)
          sequence = StepSequence.new(step, batch)
          output = if step.timeout_seconds.positive?
                     Timeout.timeout(step.timeout_seconds, StepTimeout) { handler.process(task, sequence, step) }
                   else
                     handler.process(task, sequence, step)
                   end
          output = handler.process_results(step, output) if handler.respond_to?(:process_results)
          { "success" => true, "results" => output.nil? ? {} : output }
        end
      rescue RetryableError => e
        failure(e, "retry_after_seconds" => retry_after_seconds(e.retry_after))
      rescue PermanentError => e
        failure(e, "permanent" => true)
      rescue StepTimeout => e
        failure(e, "timed_out" => true, "message" => "step timed out after #{step.timeout_seconds}s")
      rescue StandardError, ScriptError => e
        failure(e)
      end
      out["step_id"] = step.step_id
      out["attempt"] = step.attempt
      out["duration_ms"] = ((Process.clock_gettime(Process::CLOCK_MONOTONIC) - started) * 1000).round
      out
    end

    # Runs the block through around_handler when one is set.
    def self.wrapped(task, step, &block)
      wrapper = around_handler
      wrapper ? wrapper.call(task, step, &block) : yield
    end

    # Raised by Timeout inside a step that ran too long.
    class StepTimeout < Timeout::Error; end

    def self.instantiate(klass, step)
      klass.new(config: step.handler_config)
    rescue ArgumentError
      klass.new
    end

    def self.failure(exc, extra = {})
      err = { "message" => exc.message.to_s, "class" => exc.class.name.to_s,
              "backtrace" => (exc.backtrace || []).first(50) }.merge(extra)
      err.delete("retry_after_seconds") if err["retry_after_seconds"].nil?
      { "success" => false, "error" => err }
    end

    def self.retry_after_seconds(value)
      return nil if value.nil?

      value = value.to_f
      value.positive? ? value : nil
    end
  end
end
