# frozen_string_literal: true

module TaskerCore
  # Base class of every error the gem raises.
  class Error < StandardError; end

  # Misconfiguration (unknown transport, missing library, bad option).
  class ConfigurationError < Error; end

  # The embedded transport was used in a process forked after libtasker was
  # loaded. The Go runtime does not survive fork(): use the socket transport
  # in forking servers, or load lazily after the fork (see the README).
  class ForkError < Error; end

  # The socket transport could not reach `tasker serve`.
  class ConnectionError < Error; end

  # The connection to `tasker serve` dropped after a call was sent and
  # before its answer came, and the call is not safe to send again
  # (claim_steps, queue_claim, events_poll, cancel, ...): the server may
  # have carried it out. A transient failure: callers treat it as any
  # ConnectionError (a job fails and is retried, a poller tries again).
  # Steps a lost claim_steps took return to the pool when their lease
  # expires. #rpc_method names the call.
  class ConnectionLostError < ConnectionError
    attr_reader :rpc_method

    def initialize(message = nil, rpc_method: nil)
      super(message)
      @rpc_method = rpc_method
    end
  end

  # An error answered by the core. #code is the protocol's error code,
  # #details its details hash.
  class CoreError < Error
    attr_reader :code, :details

    def initialize(message = nil, code: nil, details: nil)
      super(message)
      @code = code
      @details = details || {}
    end
  end

  # A task, step, template or subscription that does not exist.
  class NotFoundError < CoreError; end
  # A template that fails validation.
  class InvalidTemplateError < CoreError; end
  # A task context that violates the template's schema.
  class InvalidContextError < CoreError; end
  # A task or step not in a state that allows the operation.
  class InvalidTransitionError < CoreError; end
  # A malformed request (unknown field, bad parameter, unknown method).
  class InvalidRequestError < CoreError; end
  # The database failed or does not answer.
  class DatabaseError < CoreError; end
  # The call's timeout ended it.
  class TimeoutError < CoreError; end
  # Anything else the core reports.
  class InternalError < CoreError; end

  # Error codes of the protocol mapped to exception classes.
  CORE_ERRORS = {
    "not_found" => NotFoundError,
    "invalid_template" => InvalidTemplateError,
    "invalid_context" => InvalidContextError,
    "invalid_transition" => InvalidTransitionError,
    "invalid_request" => InvalidRequestError,
    "payload_too_large" => InvalidRequestError,
    "method_not_allowed" => InvalidRequestError,
    "unauthorized" => InvalidRequestError,
    "database" => DatabaseError,
    "unavailable" => DatabaseError,
    "timeout" => TimeoutError,
    "internal" => InternalError
  }.freeze

  # Builds the exception for an error document {"code", "message", "details"}.
  def self.core_error(doc)
    doc ||= {}
    klass = CORE_ERRORS.fetch(doc["code"].to_s, InternalError)
    klass.new(doc["message"] || doc["code"] || "core error", code: doc["code"], details: doc["details"])
  end

  # Raised by a step handler: the attempt failed and may be retried.
  # retry_after (seconds) is the delay the remote side asked for; it wins
  # over the computed backoff.
  class RetryableError < Error
    attr_reader :retry_after

    def initialize(message = "retryable step failure", retry_after: nil)
      super(message)
      @retry_after = retry_after
    end
  end

  # Raised by a step handler: the step failed for good, no more attempts.
  class PermanentError < Error; end
end
