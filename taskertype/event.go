package taskertype

import "time"

// EventKind names a lifecycle event. The catalog, with each payload, is in
// docs/events.md.
type EventKind string

// Task lifecycle events.
const (
	EventTaskInitialized EventKind = "task.initialized"
	EventTaskEnqueue     EventKind = "task.enqueue"
	EventTaskReenqueue   EventKind = "task.reenqueue"
	EventTaskStarted     EventKind = "task.started"
	EventTaskCompleted   EventKind = "task.completed"
	EventTaskFailed      EventKind = "task.failed"
	EventTaskBlocked     EventKind = "task.blocked"
	EventTaskCancelled   EventKind = "task.cancelled"
	EventTaskResolved    EventKind = "task.resolved_manually"
)

// Step lifecycle events.
const (
	EventStepStarted        EventKind = "step.started"
	EventStepCompleted      EventKind = "step.completed"
	EventStepFailed         EventKind = "step.failed"
	EventStepRetryScheduled EventKind = "step.retry_scheduled"
	EventStepRetried        EventKind = "step.retried"
	EventStepResolved       EventKind = "step.resolved_manually"
	EventStepCancelled      EventKind = "step.cancelled"
	EventStepSkipped        EventKind = "step.skipped"
	// EventStepExpanded: a fan_out step was expanded into its children.
	EventStepExpanded EventKind = "step.expanded"
)

// Event is one lifecycle event, published only after the state change it
// announces has been committed.
type Event struct {
	// Kind names the event.
	Kind EventKind `json:"name"`
	// TaskID is the task the event is about.
	TaskID int64 `json:"task_id"`
	// StepID and StepName are set for step events.
	StepID   int64  `json:"step_id,omitempty"`
	StepName string `json:"step_name,omitempty"`
	// Time is when the engine made the state change (the transition row's
	// timestamp, taken just before the commit).
	Time time.Time `json:"time"`
	// Data carries the kind-specific payload (see docs/events.md).
	Data map[string]any `json:"data,omitempty"`
}
