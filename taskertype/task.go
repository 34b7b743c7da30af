package taskertype

import (
	"encoding/json"
	"time"
)

// Task is one run of a task template.
type Task struct {
	ID               int64           `json:"task_id"`
	Namespace        string          `json:"namespace"`
	Name             string          `json:"name"`
	Version          string          `json:"version"`
	State            TaskState       `json:"status"`
	Context          json.RawMessage `json:"context"`
	Initiator        string          `json:"initiator,omitempty"`
	SourceSystem     string          `json:"source_system,omitempty"`
	Reason           string          `json:"reason,omitempty"`
	Tags             []string        `json:"tags,omitempty"`
	Priority         int             `json:"priority"`
	IdempotencyKey   string          `json:"idempotency_key,omitempty"`
	MaxParallelSteps int             `json:"max_parallel_steps"`
	CreatedAt        time.Time       `json:"created_at"`
	UpdatedAt        time.Time       `json:"updated_at"`
	CompletedAt      *time.Time      `json:"completed_at,omitempty"`
	// RunAt is when a delayed task was due (TaskRequest.RunAt or
	// DelaySeconds); nil for a task due at its creation.
	RunAt *time.Time `json:"run_at,omitempty"`
	// RetentionSeconds is how long the task is kept once it finished
	// complete, cancelled or resolved manually, and RetentionFailedSeconds
	// once it failed (error), decided at its creation from its template or
	// the engine's default (docs/flow-control.md#retention); nil keeps it
	// for ever.
	RetentionSeconds       *int64 `json:"retention_seconds"`
	RetentionFailedSeconds *int64 `json:"retention_failed_seconds"`
	// KeepUntil is when the finished task becomes due for pruning (its
	// completion plus the retention of the state it reached); nil while
	// it is unfinished and when it is kept for ever.
	KeepUntil *time.Time `json:"keep_until,omitempty"`
}

// Step is one workflow step of a task, with its current state and the
// outcome of its last attempt.
type Step struct {
	ID             int64           `json:"step_id"`
	TaskID         int64           `json:"task_id"`
	Name           string          `json:"name"`
	HandlerClass   string          `json:"handler_class"`
	HandlerConfig  json.RawMessage `json:"handler_config,omitempty"`
	State          StepState       `json:"status"`
	Retryable      bool            `json:"retryable"`
	Attempts       int             `json:"attempts"`
	MaxAttempts    int             `json:"max_attempts"`
	TimeoutSeconds int             `json:"timeout_seconds,omitempty"`
	Skippable      bool            `json:"skippable,omitempty"`
	Inputs         json.RawMessage `json:"inputs,omitempty"`
	Results        json.RawMessage `json:"results,omitempty"`
	// Error is the last attempt's error document: {"message", "kind", ...}.
	Error json.RawMessage `json:"error,omitempty"`
	// BackoffRequestSeconds is the delay the remote side asked for on the last
	// failure (Retry-After), nil when none.
	BackoffRequestSeconds *int       `json:"backoff_request_seconds,omitempty"`
	LastAttemptedAt       *time.Time `json:"last_attempted_at,omitempty"`
	NextRetryAt           *time.Time `json:"next_retry_at,omitempty"`
	LeaseOwner            string     `json:"lease_owner,omitempty"`
	LeaseExpiresAt        *time.Time `json:"lease_expires_at,omitempty"`
	CreatedAt             time.Time  `json:"created_at"`
	UpdatedAt             time.Time  `json:"updated_at"`
	CompletedAt           *time.Time `json:"completed_at,omitempty"`
	// Parents lists the names of the steps this one depends on.
	Parents []string `json:"depends_on,omitempty"`
}

// Transition is one row of a task's or step's append-only audit trail.
type Transition struct {
	ID        int64           `json:"id"`
	TaskID    int64           `json:"task_id"`
	StepID    int64           `json:"step_id,omitempty"`
	StepName  string          `json:"step_name,omitempty"`
	FromState string          `json:"from_state,omitempty"`
	ToState   string          `json:"to_state"`
	Event     string          `json:"event"`
	Reason    string          `json:"reason,omitempty"`
	Actor     string          `json:"actor,omitempty"`
	Metadata  json.RawMessage `json:"metadata,omitempty"`
	SortKey   int             `json:"sort_key"`
	// MostRecent marks the row that holds the current state.
	MostRecent bool      `json:"most_recent"`
	CreatedAt  time.Time `json:"created_at"`
}

// StepReadiness is what viable-step discovery knows about one step: whether
// it may run now and, if not, every fact that says why.
type StepReadiness struct {
	StepID         int64      `json:"step_id"`
	Name           string     `json:"name"`
	State          StepState  `json:"status"`
	Attempts       int        `json:"attempts"`
	MaxAttempts    int        `json:"max_attempts"`
	Retryable      bool       `json:"retryable"`
	NextRetryAt    *time.Time `json:"next_retry_at,omitempty"`
	LeaseOwner     string     `json:"lease_owner,omitempty"`
	LeaseExpiresAt *time.Time `json:"lease_expires_at,omitempty"`
	// TotalParents and CompletedParents count the step's dependencies and
	// those complete or resolved manually.
	TotalParents     int `json:"total_parents"`
	CompletedParents int `json:"completed_parents"`
	// DependenciesSatisfied: every parent is complete or resolved manually.
	DependenciesSatisfied bool `json:"dependencies_satisfied"`
	// RetryEligible: attempts < max_attempts and (first attempt or retryable).
	RetryEligible bool `json:"retry_eligible"`
	// BackoffExpired: no next_retry_at, or it has passed.
	BackoffExpired bool `json:"backoff_expired"`
	// Ready: the step may be claimed now.
	Ready bool `json:"ready"`
	// BlockingParents names the parents that are not yet finished.
	BlockingParents []string `json:"blocking_parents,omitempty"`
	// Reason explains the readiness in one sentence.
	Reason string `json:"reason"`
}
