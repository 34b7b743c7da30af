# frozen_string_literal: true

require "rbconfig"
require "socket"
require "securerandom"

module TaskerCore
  # Settings of the gem. Plain values only: nothing is opened or loaded
  # until the first call that needs the core.
  class Configuration
    # Transports: :embedded loads libtasker in this process (ffi); :socket
    # talks to `tasker serve` over HTTP and loads no native code.
    TRANSPORTS = %i[embedded socket].freeze

    # Database URL: postgres://..., postgresql://... or sqlite:PATH
    # (embedded transport; the socket transport uses the server's).
    attr_accessor :database_url
    # Template directory, read recursively (embedded transport).
    attr_accessor :templates_dir
    # :embedded (default) or :socket.
    attr_reader :transport
    # Base URL of `tasker serve` for the socket transport.
    attr_accessor :server_url
    # Bearer token of `tasker serve` (socket transport).
    attr_accessor :api_token
    # Path of libtasker.so (embedded transport). Defaults to
    # $TASKER_LIBRARY_PATH, then the gem's vendor/ and build/ directories.
    attr_accessor :library_path
    # How many step handlers of one task run at once (Ruby threads): nil
    # (the default) runs up to the template's max_parallel_steps; a number
    # can only lower the template's value, never raise it.
    attr_accessor :max_parallel_steps
    # Seconds a call to the core may take (the core enforces it too).
    attr_accessor :call_timeout
    # Publish task.enqueue / task.reenqueue for a job system (default true).
    attr_accessor :event_enqueue
    # Apply pending migrations when the embedded core opens a PostgreSQL
    # database (SQLite is always migrated).
    attr_accessor :auto_migrate
    # Retry delays in milliseconds for the embedded core, e.g.
    # { base_ms: 1000, max_ms: 300_000, min_ms: 1000 } (nil = defaults).
    attr_accessor :backoff
    # Step lease in milliseconds for the embedded core (nil = 30 s).
    attr_accessor :step_lease_ms
    # How often (milliseconds) the embedded core returns steps whose lease
    # expired (a dead worker's) to the pool: nil = 10 s, a negative value
    # turns the background rescuer off.
    attr_accessor :rescue_interval_ms
    # Allow the built-in tasker:command handler in the embedded core
    # (default false).
    attr_accessor :enable_command_handler
    # environments.<name> overrides of templates (embedded core).
    attr_accessor :environment
    # Log level of the embedded core: debug, info, warn (default), error.
    # Also settable as core_log_level.
    attr_accessor :log_level
    # A Logger for the gem's own warnings and, by default, the embedded
    # core's log (nil = none; in Rails, Rails.logger tagged "tasker").
    attr_accessor :logger
    # Where the embedded core's log goes: :logger (the default when a logger
    # is set: the records are written to config.logger by a thread of the
    # gem, tagged "[tasker] [core]", see CoreLogs) or :stderr (the default
    # without a logger: the core writes slog's text format to the process's
    # stderr). The socket transport ignores it (`tasker serve` logs on its own).
    attr_reader :core_logs
    # Seconds between two drains of the core's log (core_logs :logger).
    attr_accessor :core_log_interval
    # Seconds #handle lets in-flight step handlers finish after
    # TaskerCore.shutdown! before it releases their steps (default 8, below
    # Sidekiq's default 25 s shutdown timeout).
    attr_accessor :shutdown_grace
    # Name of this process in leases (default ruby-<host>-<pid>-<random>,
    # recomputed after a fork).
    attr_writer :owner
    # Tag created tasks with the current W3C trace context
    # ("traceparent:<value>", see TaskerCore::TraceContext) when the
    # request carries none (default true).
    attr_accessor :propagate_trace_context

    def initialize
      @database_url = ENV.fetch("TASKER_DATABASE_URL", nil)
      @templates_dir = "config/tasker/tasks"
      @transport = ENV.fetch("TASKER_TRANSPORT", "embedded").to_sym
      @server_url = ENV.fetch("TASKER_URL", "http://127.0.0.1:8080")
      @api_token = ENV.fetch("TASKER_API_TOKEN", nil)
      @library_path = ENV.fetch("TASKER_LIBRARY_PATH", nil)
      @max_parallel_steps = nil
      @call_timeout = 30
      @event_enqueue = true
      @auto_migrate = false
      @log_level = "warn"
      @core_logs = nil
      @core_log_interval = 0.5
      @shutdown_grace = 8
      @propagate_trace_context = true
    end

    def transport=(value)
      value = value.to_sym
      raise ConfigurationError, "transport must be one of #{TRANSPORTS.inspect}, got #{value.inspect}" unless TRANSPORTS.include?(value)

      @transport = value
    end

    CORE_LOGS = %i[logger stderr].freeze

    # nil: :logger when a logger is set, else :stderr.
    def core_logs=(value)
      value = value&.to_sym
      unless value.nil? || CORE_LOGS.include?(value)
        raise ConfigurationError, "core_logs must be one of #{CORE_LOGS.inspect} (or nil), got #{value.inspect}"
      end

      @core_logs = value
    end

    alias core_log_level log_level
    alias core_log_level= log_level=

    # Where the embedded core's log goes now: :logger or :stderr (see core_logs).
    def core_log_sink
      sink = core_logs || (logger ? :logger : :stderr)
      raise ConfigurationError, "core_logs is :logger but no logger is set (config.logger)" if sink == :logger && logger.nil?

      sink
    end

    # The step lease in seconds (step_lease_ms / 1000.0; nil = the core's 30 s).
    def step_lease
      step_lease_ms && step_lease_ms / 1000.0
    end

    def step_lease=(seconds)
      self.step_lease_ms = seconds.nil? ? nil : (seconds.to_f * 1000).round
    end

    alias socket_url server_url
    alias socket_url= server_url=
    alias socket_token api_token
    alias socket_token= api_token=

    # This process's lease owner name.
    def owner
      return @owner if @owner

      if @owner_pid != Process.pid
        @owner_pid = Process.pid
        @generated_owner = "ruby-#{Socket.gethostname}-#{Process.pid}-#{SecureRandom.hex(4)}"
      end
      @generated_owner
    end

    # File names of libtasker on this platform (Go's c-shared output).
    def self.library_names
      RbConfig::CONFIG["host_os"] =~ /darwin/ ? %w[libtasker.dylib libtasker.so] : %w[libtasker.so]
    end

    # Where the gem looks for libtasker when library_path is not set: the
    # library built by `gem install` (the gem's extension directory, and its
    # lib/tasker_core), tasker_core/ under $LOAD_PATH, then the repository's
    # vendor/libtasker and build directories.
    def library_candidates
      dirs = [__dir__]
      spec = defined?(Gem) && Gem.respond_to?(:loaded_specs) ? Gem.loaded_specs["tasker_core"] : nil
      dirs << File.join(spec.extension_dir, "tasker_core") if spec.respond_to?(:extension_dir) && spec.extension_dir
      dirs.concat($LOAD_PATH.map { |d| File.join(d.to_s, "tasker_core") })
      dirs << File.expand_path("../../vendor/libtasker", __dir__) << File.expand_path("../../build", __dir__)
      dirs.uniq.flat_map { |d| self.class.library_names.map { |n| File.join(d, n) } }
    end

    # The shared library to load. A library_path that is set (also through
    # $TASKER_LIBRARY_PATH) must exist: a file, or a directory holding
    # libtasker.so (.dylib on macOS).
    def resolved_library_path
      if library_path && !library_path.to_s.empty?
        path = File.expand_path(library_path.to_s)
        return path if File.file?(path)

        if File.directory?(path)
          found = self.class.library_names.map { |n| File.join(path, n) }.find { |p| File.file?(p) }
          return found if found
        end
        origin = ENV["TASKER_LIBRARY_PATH"] == library_path ? "$TASKER_LIBRARY_PATH" : "library_path"
        raise ConfigurationError, "libtasker not found at #{path} (#{origin}): no such file" \
                                  "#{File.directory?(path) ? " named #{self.class.library_names.join(' or ')} in that directory" : ''}"
      end
      candidates = library_candidates
      found = candidates.find { |p| File.file?(p) }
      return found if found

      why = candidates.map { |c| c.sub(/libtasker\.(so|dylib)\z/, "libtasker.not-built") }.uniq.find { |m| File.file?(m) }
      reason = why ? " libtasker was not built when the gem was installed: #{File.read(why).strip}." : ""
      raise ConfigurationError, "libtasker not found (looked in #{candidates.join(', ')}).#{reason} Install the gem " \
                                "where Go is available (it builds libtasker), or build it with " \
                                "`go build -buildmode=c-shared -o libtasker.so ./libtasker` and set library_path " \
                                "(or TASKER_LIBRARY_PATH), or use transport :socket"
    end

    # The tasker_open document of the embedded transport. The templates
    # directory must exist (else InvalidTemplateError naming it); a
    # symbolic link to it is resolved, so its templates are read.
    def open_document
      doc = { "database_url" => database_url.to_s, "templates_dir" => resolved_templates_dir,
              "event_enqueue" => event_enqueue ? true : false, "auto_migrate" => auto_migrate ? true : false,
              "log_level" => log_level.to_s, "owner" => owner }
      doc["log_sink"] = "buffer" if core_log_sink == :logger
      doc["environment"] = environment.to_s if environment
      doc["step_lease_ms"] = Integer(step_lease_ms) if step_lease_ms
      doc["rescue_interval_ms"] = Integer(rescue_interval_ms) if rescue_interval_ms
      doc["enable_command_handler"] = true if enable_command_handler
      doc["backoff"] = backoff.to_h.transform_keys(&:to_s) if backoff
      doc
    end

    # templates_dir as an absolute path with symbolic links resolved.
    def resolved_templates_dir
      dir = File.expand_path(templates_dir.to_s)
      unless File.directory?(dir)
        what = File.exist?(dir) ? "is not a directory" : "does not exist"
        raise InvalidTemplateError.new("templates_dir #{dir} #{what} (config.templates_dir: the directory of " \
                                       "the task template YAML files)", code: "invalid_template",
                                                                        details: { "templates_dir" => dir })
      end
      File.realpath(dir)
    end
  end
end
