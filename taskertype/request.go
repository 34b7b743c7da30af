package taskertype

import (
	"encoding/json"
	"time"
)

// TaskRequest asks for a new task. Namespace and Name are required; every
// other field may be left zero.
type TaskRequest struct {
	// Namespace and Name select the task template.
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Version selects a template version; "" means the highest loaded.
	Version string `json:"version,omitempty"`
	// Context is the task's JSON document, checked against the template's
	// schema. Empty means {}.
	Context json.RawMessage `json:"context,omitempty"`
	// Initiator, SourceSystem and Reason are recorded with the task.
	Initiator    string `json:"initiator,omitempty"`
	SourceSystem string `json:"source_system,omitempty"`
	Reason       string `json:"reason,omitempty"`
	// Tags are free-form labels kept with the task.
	Tags []string `json:"tags,omitempty"`
	// BypassSteps names skippable steps to mark resolved at creation.
	BypassSteps []string `json:"bypass_steps,omitempty"`
	// Priority orders the queue (higher first) and shortens retry delays
	// when positive. Defaults to 0.
	Priority int `json:"priority,omitempty"`
	// IdempotencyKey, when set, makes a second request with the same key
	// return the existing task instead of creating one.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// StepInputs gives steps their own inputs (a JSON document each), by
	// step name.
	StepInputs map[string]json.RawMessage `json:"step_inputs,omitempty"`
	// RunAt delays the task: it is created at once (pending) but no runner
	// starts it before this time. A time in the past means now. Exclusive
	// with DelaySeconds.
	RunAt *time.Time `json:"run_at,omitempty"`
	// DelaySeconds delays the task by this many seconds from its creation
	// (fractions allowed, at most MaxDelaySeconds). Exclusive with RunAt.
	DelaySeconds float64 `json:"delay_seconds,omitempty"`
}

// MaxDelaySeconds bounds TaskRequest.DelaySeconds (ten years).
const MaxDelaySeconds = 10 * 365 * 24 * 3600

// Actor names who asked for a manual operation and why; both are recorded
// on the transitions.
type Actor struct {
	Who    string `json:"actor,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Action is the TaskFinalizer's decision.
type Action string

// Finalizer decisions, in the order they are checked.
const (
	// ActionFail: a step failed permanently or exhausted its attempts. Checked
	// first, so a failed task never keeps running its other branches.
	ActionFail Action = "failed"
	// ActionContinue: steps are ready now; the coordinator loops again.
	ActionContinue Action = "continue"
	// ActionElsewhere: steps are in progress under another coordinator, which
	// will finalize the task.
	ActionElsewhere Action = "running_elsewhere"
	// ActionWait: steps wait out their backoff; the task is re-enqueued for
	// the earliest retry time.
	ActionWait Action = "retry_viable"
	// ActionComplete: every step is complete or resolved manually.
	ActionComplete Action = "complete"
	// ActionBlock: nothing can run, nothing is running or waiting, and the
	// task is not finished (for example a parent was cancelled).
	ActionBlock Action = "blocked"
	// ActionYield: the coordinator stopped early (shutdown) and handed the
	// task back to the queue.
	ActionYield Action = "yielded"
	// ActionExpire: the task was unfinished at its deadline (its template's
	// timeout_seconds after its creation): it ended in error and its
	// unfinished steps were cancelled.
	ActionExpire Action = "expired"
	// ActionNone: the task was not runnable (terminal, blocked, in error).
	ActionNone Action = "none"
)

// HandleResult is the orchestration result of one Handle call.
type HandleResult struct {
	TaskID int64 `json:"task_id"`
	// Status is the task's state when Handle returned.
	Status TaskState `json:"status"`
	// Outcome is the finalizer's decision.
	Outcome Action `json:"outcome"`
	// Reason explains the outcome.
	Reason string `json:"reason,omitempty"`
	// StepsExecuted counts the attempts this call ran.
	StepsExecuted int `json:"steps_executed"`
	// NextRunAt is when the task should be handled again (waiting for retry).
	NextRunAt *time.Time `json:"next_run_at,omitempty"`
}

// Finalized reports whether no further Handle is due from this caller (the
// task ended, is blocked, or another coordinator owns its running steps).
// It is false for retry_viable, yielded and continue (viable steps remain).
func (r *HandleResult) Finalized() bool {
	return r.Outcome != ActionWait && r.Outcome != ActionYield && r.Outcome != ActionContinue
}
