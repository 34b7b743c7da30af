package taskertype

import (
	"encoding/json"
	"time"
)

// The external-worker (pull) protocol's types: what a worker that cannot be
// called from Go (the Ruby gem, through libtasker or `tasker serve`) sends
// and receives. See tasker.Worker and docs/api.md ("Pull API").

// ExternalTask is the task part of a claim: what a handler may read.
type ExternalTask struct {
	TaskID           int64           `json:"task_id"`
	Namespace        string          `json:"namespace"`
	Name             string          `json:"name"`
	Version          string          `json:"version"`
	Status           TaskState       `json:"status"`
	Context          json.RawMessage `json:"context"`
	Priority         int             `json:"priority"`
	MaxParallelSteps int             `json:"max_parallel_steps"`
	Tags             []string        `json:"tags,omitempty"`
	Initiator        string          `json:"initiator,omitempty"`
	SourceSystem     string          `json:"source_system,omitempty"`
	Reason           string          `json:"reason,omitempty"`
}

// ExternalStep is one claimed attempt of a step, with everything a handler
// needs.
type ExternalStep struct {
	StepID         int64           `json:"step_id"`
	Name           string          `json:"name"`
	HandlerClass   string          `json:"handler_class"`
	HandlerConfig  json.RawMessage `json:"handler_config"`
	Inputs         json.RawMessage `json:"inputs"`
	Attempt        int             `json:"attempt"`
	MaxAttempts    int             `json:"max_attempts"`
	Retryable      bool            `json:"retryable"`
	TimeoutSeconds int             `json:"timeout_seconds"`
	// DependencyResults holds the results of the step's parents by name.
	DependencyResults map[string]json.RawMessage `json:"dependency_results"`
	Parents           []string                   `json:"depends_on"`
	LeaseExpiresAt    time.Time                  `json:"lease_expires_at"`
	// TraceParent is the attempt's W3C traceparent, to send on the
	// handler's own calls ("" when the task carries no trace context).
	TraceParent string `json:"traceparent,omitempty"`
}

// ClaimResult answers ClaimSteps.
type ClaimResult struct {
	Task ExternalTask `json:"task"`
	// Runnable is false when the task is not in a state steps can run in
	// (complete, failed, blocked, cancelled...); Steps is then empty.
	Runnable bool           `json:"runnable"`
	Steps    []ExternalStep `json:"steps"`
	// Reason says why a pending task was not started, when it was held
	// back: "waiting: concurrency key acct-42 at limit 1".
	Reason string `json:"reason,omitempty"`
}

// ExternalError is a failed attempt as the worker reports it.
type ExternalError struct {
	Message string `json:"message"`
	// Class is the exception class (Ruby) or error type of the failure.
	Class     string   `json:"class,omitempty"`
	Backtrace []string `json:"backtrace,omitempty"`
	// Retryable false, like Permanent true, ends the step's retries.
	Retryable *bool `json:"retryable,omitempty"`
	Permanent bool  `json:"permanent,omitempty"`
	// RetryAfterSeconds is the delay the remote side asked for (Retry-After);
	// it wins over the computed backoff.
	RetryAfterSeconds float64 `json:"retry_after_seconds,omitempty"`
	// TimedOut reports that the worker stopped the handler at its timeout.
	TimedOut bool `json:"timed_out,omitempty"`
}

// ExternalResult is the result of one claimed attempt.
type ExternalResult struct {
	StepID  int64           `json:"step_id"`
	Attempt int             `json:"attempt"`
	Success bool            `json:"success"`
	Results json.RawMessage `json:"results,omitempty"`
	Error   *ExternalError  `json:"error,omitempty"`
	// DurationMS is how long the handler ran.
	DurationMS int64 `json:"duration_ms,omitempty"`
	// Release gives the attempt back instead of recording a result: the
	// worker is shutting down and did not let the handler finish. The step
	// returns to pending and its attempt is not counted, as when the Go
	// coordinator releases its steps on shutdown. Success must be false.
	Release bool `json:"release,omitempty"`
}

// Report statuses of ReportedResult.
const (
	// ReportRecorded: the result was recorded; State is the step's new state.
	ReportRecorded = "recorded"
	// ReportDiscarded: the caller no longer holds this attempt (its lease
	// expired and it was rescued, the step was cancelled or resolved, the
	// result was already reported, or the attempt number is stale).
	ReportDiscarded = "discarded"
)

// ReportedResult says what became of one reported result.
type ReportedResult struct {
	StepID int64     `json:"step_id"`
	Status string    `json:"status"`
	State  StepState `json:"state,omitempty"`
	Reason string    `json:"reason,omitempty"`
	// NextRetryAt is set when the step waits for a retry.
	NextRetryAt *time.Time `json:"next_retry_at,omitempty"`
}

// ReportResult answers ReportResults.
type ReportResult struct {
	Results []ReportedResult `json:"results"`
	// ClaimMore is false when a step failed for good: like the Go
	// coordinator, the worker should claim nothing more, let its in-flight
	// steps finish, and finalize.
	ClaimMore bool `json:"claim_more"`
	// Unlocks is true when a step this report completed has children in the
	// task's template (or the template is not loaded here): a child may have
	// become ready, so a worker whose last claim came back short should
	// claim again. When false, such a claim would find nothing new.
	Unlocks bool `json:"unlocks"`
	// Final is the TaskFinalizer's decision when the report asked for it
	// (the worker's last report, nothing left in flight), applied in the
	// transaction that recorded the results: what Finalize would return.
	// Outcome "continue" means steps are ready: claim again.
	Final *HandleResult `json:"final,omitempty"`
}

// ExtendResult answers ExtendLeases.
type ExtendResult struct {
	Extended       int       `json:"extended"`
	LeaseExpiresAt time.Time `json:"lease_expires_at"`
}
