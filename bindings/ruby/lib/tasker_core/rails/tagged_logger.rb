# frozen_string_literal: true

require "logger"

module TaskerCore
  module Rails
    # The gem's logger in a Rails app: every line goes to Rails.logger
    # tagged "tasker" (ActiveSupport::TaggedLogging, which Rails.logger is),
    # so `grep '\[tasker\]' log/production.log` finds them. Also usable
    # around any Logger: without #tagged the tag is a prefix.
    class TaggedLogger
      TAG = "tasker"

      attr_reader :logger, :tag

      def initialize(logger, tag = TAG)
        @logger = logger
        @tag = tag
      end

      %i[debug info warn error fatal unknown].each do |level|
        define_method(level) do |message = nil, &block|
          add(Logger.const_get(level.upcase), message, nil, &block)
        end
        define_method("#{level}?") { @logger.public_send("#{level}?") }
      end

      def add(severity, message = nil, progname = nil, &block)
        return true if severity < @logger.level

        if @logger.respond_to?(:tagged)
          @logger.tagged(@tag) { @logger.add(severity, message, progname, &block) }
        else
          message = block.call if message.nil? && block
          @logger.add(severity, "[#{@tag}] #{message || progname}")
        end
      end
      alias log add

      def level
        @logger.level
      end

      def level=(value)
        @logger.level = value
      end
    end
  end
end
