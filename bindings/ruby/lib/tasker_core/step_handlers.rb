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

    # Optional hook, in either of two forms:
    #
    #   def process_results(step, process_output)                   # returns the results to store
    #   def process_results(step, process_output, initial_results)  # the reference design: sets step.results
    #
    # In the 3-argument form initial_results is what #process assigned to
    # step.results (nil when it assigned nothing) and the hook stores its
    # results with step.results = ...; when it assigns nothing the process
    # output is stored. The default stores step.results when #process
    # assigned it, else the process output.
    def process_results(step, process_output, initial_results = NOT_GIVEN)
      if NOT_GIVEN.equal?(initial_results)
        step.results_assigned? ? step.results : process_output
      else
        step.results = process_output unless step.results_assigned?
        step.results
      end
    end

    NOT_GIVEN = Object.new.freeze
    private_constant :NOT_GIVEN
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
    #
    # Every exception of the handler ends the attempt with a result: the
    # gem's RetryableError / PermanentError, a timeout, and any other
    # exception at all (StandardError, ScriptError, SystemStackError,
    # NoMemoryError, a bare Exception, SystemExit) as a retryable failure
    # recording its class, message and backtrace. A SignalException
    # (Interrupt, Sidekiq::Shutdown) releases the attempt instead (the
    # step is handed back without counting it) and carries the exception
    # under :interrupt, which the Coordinator re-raises after the hand-back.
    # A results value JSON cannot carry (NaN, Infinity, an object without
    # a JSON form, invalid UTF-8) is a permanent failure of the attempt.
    #
    # The handler (and around_handler) runs with the step's traceparent as
    # TaskerCore::TraceContext.current (TraceContext.with).
    def self.run(task, step, batch)
      TraceContext.with(step.respond_to?(:traceparent) ? step.traceparent : nil) { run_attempt(task, step, batch) }
    end

    def self.run_attempt(task, step, batch)
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
          results = final_results(handler, step, output)
          results = {} if results.nil?
          if (problem = JsonCheck.problem(results))
            unserializable(handler, problem)
          else
            { "success" => true, "results" => results }
          end
        end
      rescue RetryableError => e
        failure(e, "retry_after_seconds" => retry_after_seconds(e.retry_after))
      rescue PermanentError => e
        failure(e, "permanent" => true)
      rescue StepTimeout => e
        failure(e, "timed_out" => true, "message" => "step timed out after #{step.timeout_seconds}s")
      rescue SignalException => e
        { "success" => false, "release" => true, :interrupt => e }
      rescue Exception => e # rubocop:disable Lint/RescueException -- a handler must never end its thread silently
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

    # The results to store: what process_results makes of the output (see
    # BaseStepHandler#process_results for its two forms).
    def self.final_results(handler, step, output)
      case hook_form(handler)
      when :default, :none then step.results_assigned? ? step.results : output
      when :three
        handler.process_results(step, output, step.results)
        step.results_assigned? ? step.results : output
      else
        handler.process_results(step, output)
      end
    end

    @hook_forms = {}.freeze

    # How the handler's class takes process_results: :none, :default (the
    # base class's), :two or :three arguments. Cached per class.
    def self.hook_form(handler)
      form = @hook_forms[handler.class]
      return form if form

      form = if !handler.respond_to?(:process_results) then :none
             elsif (m = handler.method(:process_results)).owner == BaseStepHandler then :default
             elsif three_arguments?(m) then :three
             else :two
             end
      # Singleton methods make an instance differ from its class: no cache.
      return form unless handler.singleton_methods.empty?

      @lock.synchronize { @hook_forms = @hook_forms.merge(handler.class => form).freeze }
      form
    end

    def self.three_arguments?(meth)
      params = meth.parameters
      req = params.count { |kind, _| kind == :req }
      opt = params.count { |kind, _| kind == :opt }
      rest = params.any? { |kind, _| kind == :rest }
      req <= 3 && (rest || req + opt >= 3)
    end

    # The permanent failure of an attempt whose results JSON cannot carry.
    def self.unserializable(handler, problem)
      { "success" => false,
        "error" => { "message" => "#{handler.class} returned results that cannot be serialized as JSON: #{problem}",
                     "class" => "TaskerCore::SerializationError", "backtrace" => [], "permanent" => true } }
    end

    # A result document that only says the attempt failed (used when the
    # handler's thread ended without one, or a results check failed late).
    def self.lost(step, message, klass: "TaskerCore::HandlerLostError", permanent: false)
      err = { "message" => message, "class" => klass, "backtrace" => [] }
      err["permanent"] = true if permanent
      { "success" => false, "error" => err, "step_id" => step.step_id, "attempt" => step.attempt }
    end

    # Checks that a results value survives JSON as the handler meant it.
    module JsonCheck
      MAX_DEPTH = 100 # JSON.generate's max_nesting

      # nil when value is fine, else what is wrong with it.
      def self.problem(value, depth = 0, path = "results")
        case value
        when String
          return nil if value.ascii_only? || (value.encoding == Encoding::UTF_8 && value.valid_encoding?)
          return nil if value.encoding != Encoding::BINARY && value.valid_encoding? # JSON transcodes it

          "#{path} is a String that is not valid UTF-8 (#{value.encoding})"
        when Integer, true, false, nil, Symbol
          nil
        when Float
          value.finite? ? nil : "#{path} is #{value} (JSON has no NaN or Infinity)"
        when Hash
          return "#{path} is nested more than #{MAX_DEPTH} levels deep" if depth >= MAX_DEPTH

          value.each do |k, v|
            p = problem(v, depth + 1, "#{path}[#{k.inspect}]")
            return p if p
          end
          nil
        when Array
          return "#{path} is nested more than #{MAX_DEPTH} levels deep" if depth >= MAX_DEPTH

          value.each_with_index do |v, i|
            p = problem(v, depth + 1, "#{path}[#{i}]")
            return p if p
          end
          nil
        else
          object(value, path)
        end
      end

      # Any other object: it must have a JSON form of its own (to_json) or a
      # meaningful to_s (Time, BigDecimal, Date... become strings, as JSON
      # encodes them); an object with neither would be stored as
      # "#<Foo:0x...>".
      def self.object(value, path)
        if !generic_to_json?(value.method(:to_json).owner)
          JSON.generate([value])
          nil
        elsif value.method(:to_s).owner == Kernel
          "#{path} is a #{value.class} (an object with no JSON form; return Hashes, Arrays, Strings, numbers, " \
            "true, false or nil)"
        end
      rescue Exception => e # rubocop:disable Lint/RescueException
        raise if e.is_a?(SignalException)

        "#{path} (a #{value.class}) failed to encode: #{e.class}: #{e.message}"
      end

      # to_json methods that only encode to_s: json's own, and
      # ActiveSupport's (which calls it for JSON.generate).
      def self.generic_to_json?(owner)
        owner == GENERIC_TO_JSON || owner.name == "ActiveSupport::ToJsonWithActiveSupportEncoder"
      end

      GENERIC_TO_JSON = if defined?(JSON::Ext::Generator::GeneratorMethods::Object)
                          JSON::Ext::Generator::GeneratorMethods::Object
                        else
                          Object.instance_method(:to_json).owner
                        end
    end

    # Raised by Timeout inside a step that ran too long.
    class StepTimeout < Timeout::Error; end

    def self.instantiate(klass, step)
      klass.new(config: step.handler_config)
    rescue ArgumentError
      klass.new
    end

    def self.failure(exc, extra = {})
      err = { "message" => utf8(exc.message.to_s), "class" => exc.class.name.to_s,
              "backtrace" => (exc.backtrace || []).first(50).map { |l| utf8(l) } }.merge(extra)
      err.delete("retry_after_seconds") if err["retry_after_seconds"].nil?
      { "success" => false, "error" => err }
    end

    # s as valid UTF-8 (an exception message may be binary or broken).
    def self.utf8(str)
      return str if str.ascii_only? || (str.encoding == Encoding::UTF_8 && str.valid_encoding?)

      str.dup.force_encoding(Encoding::UTF_8).scrub("\uFFFD")
    end

    def self.retry_after_seconds(value)
      return nil if value.nil?

      value = value.to_f
      value.positive? ? value : nil
    end
  end
end
