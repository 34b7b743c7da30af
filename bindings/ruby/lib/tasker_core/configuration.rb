# frozen_string_literal: true

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
    # environments.<name> overrides of templates (embedded core).
    attr_accessor :environment
    # Log level of the embedded core (written to stderr): debug, info, warn, error.
    attr_accessor :log_level
    # A Logger for the gem's own warnings (nil = none).
    attr_accessor :logger
    # Seconds #handle lets in-flight step handlers finish after
    # TaskerCore.shutdown! before it releases their steps (default 8, below
    # Sidekiq's default 25 s shutdown timeout).
    attr_accessor :shutdown_grace
    # Name of this process in leases (default ruby-<host>-<pid>-<random>,
    # recomputed after a fork).
    attr_writer :owner

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
      @shutdown_grace = 8
    end

    def transport=(value)
      value = value.to_sym
      raise ConfigurationError, "transport must be one of #{TRANSPORTS.inspect}, got #{value.inspect}" unless TRANSPORTS.include?(value)

      @transport = value
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

    # The shared library to load.
    def resolved_library_path
      candidates = [library_path, ENV.fetch("TASKER_LIBRARY_PATH", nil),
                    File.expand_path("../../vendor/libtasker/libtasker.so", __dir__),
                    File.expand_path("../../build/libtasker.so", __dir__)].compact
      found = candidates.find { |p| File.file?(p) }
      return found if found

      raise ConfigurationError, "libtasker not found (looked in #{candidates.join(', ')}); build it with " \
                                "`go build -buildmode=c-shared -o build/libtasker.so ./libtasker` and set " \
                                "TASKER_LIBRARY_PATH, or use transport :socket"
    end

    # The tasker_open document of the embedded transport.
    def open_document
      doc = { "database_url" => database_url.to_s, "templates_dir" => templates_dir.to_s,
              "event_enqueue" => event_enqueue ? true : false, "auto_migrate" => auto_migrate ? true : false,
              "log_level" => log_level.to_s, "owner" => owner }
      doc["environment"] = environment.to_s if environment
      doc["step_lease_ms"] = Integer(step_lease_ms) if step_lease_ms
      doc["backoff"] = backoff.transform_keys(&:to_s) if backoff
      doc
    end
  end
end
