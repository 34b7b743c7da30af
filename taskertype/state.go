package taskertype

import "slices"

// TaskState is the lifecycle state of a task. The allowed moves between
// states are decided in one place, internal/statemachine, and drawn in
// docs/state_machine.md.
type TaskState string

const (
	// TaskStatePending: created by initialization (or handed back by a
	// coordinator that stopped early); waiting for a coordinator to start it.
	TaskStatePending TaskState = "pending"
	// TaskStateInProgress: a coordinator is running the task's steps.
	TaskStateInProgress TaskState = "in_progress"
	// TaskStateWaitingForRetry: nothing can run now, but at least one step is
	// waiting out its backoff; the task is re-enqueued for the earliest retry.
	TaskStateWaitingForRetry TaskState = "waiting_for_retry"
	// TaskStateBlocked: nothing can run, nothing is running or waiting, and
	// not every step finished. An operator must retry, resolve or cancel.
	TaskStateBlocked TaskState = "blocked"
	// TaskStateComplete: every step is complete or resolved manually. Terminal.
	TaskStateComplete TaskState = "complete"
	// TaskStateError: a step failed permanently or exhausted its attempts.
	// Retrying the failed steps moves the task back to pending.
	TaskStateError TaskState = "error"
	// TaskStateCancelled: cancelled by an operator. Terminal.
	TaskStateCancelled TaskState = "cancelled"
	// TaskStateResolvedManually: marked done by an operator. Terminal.
	TaskStateResolvedManually TaskState = "resolved_manually"
)

// TaskStates returns every task state, in lifecycle order. The slice is a
// new copy on each call: changing it changes nothing else.
func TaskStates() []TaskState { return slices.Clone(taskStates) }

// taskStates is TaskStates' list.
var taskStates = []TaskState{
	TaskStatePending, TaskStateInProgress, TaskStateWaitingForRetry, TaskStateBlocked,
	TaskStateComplete, TaskStateError, TaskStateCancelled, TaskStateResolvedManually,
}

// Terminal reports whether no further orchestration happens in this state
// without an operator's action.
func (s TaskState) Terminal() bool {
	switch s {
	case TaskStateComplete, TaskStateError, TaskStateCancelled, TaskStateResolvedManually:
		return true
	}
	return false
}

// StepState is the lifecycle state of one workflow step.
type StepState string

const (
	// StepStatePending: not yet started; runs once its parents finish.
	StepStatePending StepState = "pending"
	// StepStateInProgress: claimed by a coordinator under a lease; an attempt
	// is running.
	StepStateInProgress StepState = "in_progress"
	// StepStateWaitingForRetry: the last attempt failed with retries left; the
	// step runs again once next_retry_at has passed.
	StepStateWaitingForRetry StepState = "waiting_for_retry"
	// StepStateComplete: the handler succeeded; its results are stored.
	StepStateComplete StepState = "complete"
	// StepStateError: failed permanently or exhausted max_attempts.
	StepStateError StepState = "error"
	// StepStateCancelled: cancelled with its task. Terminal.
	StepStateCancelled StepState = "cancelled"
	// StepStateResolvedManually: marked done by an operator (or bypassed at
	// initialization); satisfies its children like complete.
	StepStateResolvedManually StepState = "resolved_manually"
	// StepStateSkipped: the step's `when` condition was false when it became
	// ready, so its handler did not run; satisfies its children like
	// complete (they see no results of it). Terminal.
	StepStateSkipped StepState = "skipped"
)

// StepStates returns every step state, in lifecycle order. The slice is a
// new copy on each call: changing it changes nothing else.
func StepStates() []StepState { return slices.Clone(stepStates) }

// stepStates is StepStates' list.
var stepStates = []StepState{
	StepStatePending, StepStateInProgress, StepStateWaitingForRetry, StepStateComplete,
	StepStateError, StepStateCancelled, StepStateResolvedManually, StepStateSkipped,
}

// SatisfiesDependents reports whether a parent in this state lets its
// children run.
func (s StepState) SatisfiesDependents() bool {
	return s == StepStateComplete || s == StepStateResolvedManually || s == StepStateSkipped
}
