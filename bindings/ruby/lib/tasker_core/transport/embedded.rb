# frozen_string_literal: true

require "json"
require "tasker_core/core_logs"

module TaskerCore
  module Transport
    # Calls libtasker in this process through ffi. The library is loaded on
    # the first call (never at require time) and remembered with the pid
    # that loaded it: a forked child that tries to use it gets a ForkError
    # instead of a deadlock (the Go runtime does not survive fork()).
    class Embedded
      @load_lock = Mutex.new

      class << self
        # The pid of the process that loaded libtasker (nil before).
        attr_reader :loaded_pid

        # Loads libtasker once per process image; raises ForkError in a
        # forked child of the loading process.
        def native(path)
          check_fork!
          return @native if @native

          @load_lock.synchronize do
            return @native if @native

            require "ffi"
            @native = build_native(path)
            @loaded_pid = Process.pid
            @native
          end
        end

        def loaded?
          !@native.nil?
        end

        def check_fork!
          return if @loaded_pid.nil? || @loaded_pid == Process.pid

          raise ForkError, "libtasker (the Go core) was loaded by process #{@loaded_pid} and this process " \
                           "(#{Process.pid}) is a fork of it: the Go runtime does not survive fork(). " \
                           "In forking servers (Puma with preload_app!, Unicorn, Spring) use " \
                           "TaskerCore transport :socket (tasker serve), or make sure nothing calls the core " \
                           "before the fork and let each worker load it lazily after (Puma: on_worker_boot)."
        end

        private

        def build_native(path)
          mod = Module.new
          mod.extend(FFI::Library)
          mod.ffi_lib(path)
          # Every string comes back as a pointer: read, then tasker_free.
          mod.attach_function(:tasker_open, [:string], :pointer, blocking: true)
          mod.attach_function(:tasker_call, %i[uint64 string string int64], :pointer, blocking: true)
          mod.attach_function(:tasker_close, [:uint64], :pointer, blocking: true)
          mod.attach_function(:tasker_create_tasks, %i[uint64 string int64], :pointer, blocking: true)
          mod.attach_function(:tasker_version, [], :pointer)
          mod.attach_function(:tasker_free, [:pointer], :void)
          mod.attach_function(:tasker_shutdown, [], :void, blocking: true)
          mod
        end
      end

      def initialize(config)
        @config = config
        @lock = Mutex.new
        @handle = nil
        @core_logs = nil
      end

      # The pump of the core's log to config.logger (CoreLogs), while the
      # engine is open with core_logs :logger; else nil.
      attr_reader :core_logs

      # Calls method with params (a Hash, or a JSON String) and returns the
      # result document as a Hash.
      def call(method, params = nil, timeout: nil)
        h = handle
        json = params.is_a?(String) ? params : JSON.generate(params || {})
        ms = ((timeout || @config.call_timeout).to_f * 1000).to_i
        unwrap(take_string(native.tasker_call(h, method.to_s, json, ms)))
      end

      # Creates many tasks (tasker_create_tasks): requests is an Array of
      # request Hashes; returns the batch document.
      def create_tasks(requests, timeout: nil)
        h = handle
        ms = ((timeout || @config.call_timeout).to_f * 1000).to_i
        unwrap(take_string(native.tasker_create_tasks(h, JSON.generate(requests), ms)))
      end

      # The library's version document.
      def version
        unwrap(take_string(native.tasker_version))
      end

      # Closes the engine (the library stays loaded: Go cannot be unloaded).
      # The core's log records not drained yet come with the close and are
      # written to the logger.
      def close
        @lock.synchronize do
          return unless @handle

          logs = @core_logs
          @core_logs = nil
          # Stopped while the handle is still set: its last poll must not
          # open the engine again.
          logs&.stop
          h = @handle
          @handle = nil
          return unless self.class.loaded_pid == Process.pid

          res = unwrap(take_string(native.tasker_close(h)))
          logs&.write(res)
          res
        end
      end

      def pid_ok?
        self.class.loaded_pid.nil? || self.class.loaded_pid == Process.pid
      end

      private

      def native
        self.class.native(@config.resolved_library_path)
      end

      def handle
        self.class.check_fork!
        return @handle if @handle

        @lock.synchronize do
          return @handle if @handle

          doc = @config.open_document
          @handle = unwrap(take_string(native.tasker_open(JSON.generate(doc))))["handle"]
          start_core_logs(@handle) if doc["log_sink"] == "buffer"
          @handle
        end
      end

      # The core logs to its buffer: drain it to the logger from a thread.
      # The thread polls the handle it was started for (never reopens).
      def start_core_logs(handle)
        h = handle
        @core_logs = CoreLogs.new(@config.logger, interval: @config.core_log_interval || 0.5) do |max|
          self.class.check_fork!
          ms = (@config.call_timeout.to_f * 1000).to_i
          unwrap(take_string(native.tasker_call(h, "logs_poll", JSON.generate("max" => max), ms)))
        end
        @core_logs.start
      end

      # Copies the C string and frees it (never let ffi own a Go string).
      def take_string(ptr)
        raise InternalError.new("libtasker returned NULL", code: "internal") if ptr.null?

        begin
          ptr.read_string.force_encoding(Encoding::UTF_8)
        ensure
          native.tasker_free(ptr)
        end
      end

      def unwrap(json)
        doc = JSON.parse(json)
        raise TaskerCore.core_error(doc["error"]) unless doc["ok"]

        doc["result"]
      end
    end
  end
end
