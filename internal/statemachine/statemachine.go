// Package statemachine is the only place where task and step state changes
// are decided. It is pure: no I/O, no clock, no randomness.
//
// Each machine is a table of rows (from, event, to). Task and Step look a
// (state, event) pair up in that table:
//
//   - a row that moves the entity returns (to, true, nil);
//   - an idempotent row (an engine event repeated in the state it already
//     produced, e.g. the finalizer completing an already complete task)
//     returns (from, false, nil), so a redelivered message is harmless;
//   - any other pair, including unknown states and events, returns
//     (from, false, *taskertype.InvalidTransitionError).
//
// Operator events (cancel, resolve, retry) are never idempotent: an operator
// who cancels a cancelled task is told so instead of silently succeeding.
//
// The store never decides a transition. It applies the decided one with an
// UPDATE guarded by WHERE state IN (sources), where sources come from
// TaskSources or StepSources, so a row that changed concurrently is left
// alone. docs/state_machine.md draws both tables.
package statemachine

import (
	"slices"

	"github.com/tasker-systems/tasker/taskertype"
)

// TaskEvent names something that happens to a task.
type TaskEvent string

// Task events. Start and yield come from a coordinator; complete, fail, block
// and wait from the finalizer; expire from the engine when a task outlives
// its template's timeout_seconds; cancel, resolve and retry from an operator.
const (
	// TaskEventStart: a coordinator begins (or resumes) running the task.
	TaskEventStart TaskEvent = "start"
	// TaskEventComplete: every step is complete or resolved manually.
	TaskEventComplete TaskEvent = "complete"
	// TaskEventFail: a step ended in error.
	TaskEventFail TaskEvent = "fail"
	// TaskEventBlock: nothing can run, nothing is running or waiting, and the
	// task is not finished.
	TaskEventBlock TaskEvent = "block"
	// TaskEventWait: nothing can run now, but a step waits out its backoff.
	TaskEventWait TaskEvent = "wait"
	// TaskEventYield: the coordinator stopped early and hands the task back.
	TaskEventYield TaskEvent = "yield"
	// TaskEventCancel: an operator cancels the task.
	TaskEventCancel TaskEvent = "cancel"
	// TaskEventResolve: an operator marks the task done.
	TaskEventResolve TaskEvent = "resolve"
	// TaskEventRetry: an operator retries a failed or blocked task.
	TaskEventRetry TaskEvent = "retry"
	// TaskEventExpire: the task is still unfinished at its deadline (its
	// template's timeout_seconds after its creation); it ends in error and
	// its unfinished steps are cancelled.
	TaskEventExpire TaskEvent = "expire"
)

// StepEvent names something that happens to a workflow step.
type StepEvent string

// Step events. Claim, succeed, fail_retryable, fail_permanent and release
// come from the engine (a coordinator, or the rescuer for an expired lease);
// retry, resolve and cancel from an operator (cancel also when the task is
// cancelled).
const (
	// StepEventClaim: a coordinator claims the step under a lease for one attempt.
	StepEventClaim StepEvent = "claim"
	// StepEventSucceed: the attempt succeeded.
	StepEventSucceed StepEvent = "succeed"
	// StepEventFailRetryable: the attempt failed and attempts remain.
	StepEventFailRetryable StepEvent = "fail_retryable"
	// StepEventFailPermanent: the attempt failed permanently or was the last.
	StepEventFailPermanent StepEvent = "fail_permanent"
	// StepEventRelease: a coordinator shutting down gives the attempt back.
	StepEventRelease StepEvent = "release"
	// StepEventRetry: an operator asks for the step to run again.
	StepEventRetry StepEvent = "retry"
	// StepEventResolve: an operator marks the step done.
	StepEventResolve StepEvent = "resolve"
	// StepEventCancel: the step is cancelled (with its task, or by an operator).
	StepEventCancel StepEvent = "cancel"
	// StepEventSkip: the step's when condition was false when it was
	// claimed; its handler does not run.
	StepEventSkip StepEvent = "skip"
	// StepEventExpand: a fan-out step was expanded into its children when
	// it was claimed; it waits for them (pending) with its attempt given
	// back.
	StepEventExpand StepEvent = "expand"
	// StepEventThrottle: the step was claimed but its rate limit had no
	// token (or was blocked by a server's Retry-After); the attempt is given
	// back and the step waits until a token is due.
	StepEventThrottle StepEvent = "throttle"
)

// TaskEvents returns every task event, in declaration order.
func TaskEvents() []TaskEvent {
	return []TaskEvent{
		TaskEventStart, TaskEventComplete, TaskEventFail, TaskEventBlock, TaskEventWait,
		TaskEventYield, TaskEventCancel, TaskEventResolve, TaskEventRetry, TaskEventExpire,
	}
}

// StepEvents returns every step event, in declaration order.
func StepEvents() []StepEvent {
	return []StepEvent{
		StepEventClaim, StepEventSucceed, StepEventFailRetryable, StepEventFailPermanent,
		StepEventRelease, StepEventRetry, StepEventResolve, StepEventCancel, StepEventSkip,
		StepEventExpand, StepEventThrottle,
	}
}

// Operator reports whether the event is an operator's action (cancel,
// resolve, retry). Operator events are never idempotent.
func (e TaskEvent) Operator() bool {
	return e == TaskEventCancel || e == TaskEventResolve || e == TaskEventRetry
}

// Operator reports whether the event is an operator's action (retry,
// resolve, cancel). Operator events are never idempotent.
func (e StepEvent) Operator() bool {
	return e == StepEventRetry || e == StepEventResolve || e == StepEventCancel
}

// TaskRow is one allowed (state, event) pair of the task machine. For an
// idempotent row To equals From and Idempotent is true.
type TaskRow struct {
	From       taskertype.TaskState
	Event      TaskEvent
	To         taskertype.TaskState
	Idempotent bool
}

// StepRow is one allowed (state, event) pair of the step machine. For an
// idempotent row To equals From and Idempotent is true.
type StepRow struct {
	From       taskertype.StepState
	Event      StepEvent
	To         taskertype.StepState
	Idempotent bool
}

const (
	tPending    = taskertype.TaskStatePending
	tInProgress = taskertype.TaskStateInProgress
	tWaiting    = taskertype.TaskStateWaitingForRetry
	tBlocked    = taskertype.TaskStateBlocked
	tComplete   = taskertype.TaskStateComplete
	tError      = taskertype.TaskStateError
	tCancelled  = taskertype.TaskStateCancelled
	tResolved   = taskertype.TaskStateResolvedManually

	sPending    = taskertype.StepStatePending
	sInProgress = taskertype.StepStateInProgress
	sWaiting    = taskertype.StepStateWaitingForRetry
	sComplete   = taskertype.StepStateComplete
	sError      = taskertype.StepStateError
	sCancelled  = taskertype.StepStateCancelled
	sResolved   = taskertype.StepStateResolvedManually
	sSkipped    = taskertype.StepStateSkipped
)

// taskRows is the task machine. Idempotent rows have To == From.
var taskRows = []TaskRow{
	{tPending, TaskEventStart, tInProgress, false},
	{tWaiting, TaskEventStart, tInProgress, false},
	{tInProgress, TaskEventStart, tInProgress, true},

	{tInProgress, TaskEventComplete, tComplete, false},
	{tComplete, TaskEventComplete, tComplete, true},

	{tInProgress, TaskEventFail, tError, false},
	{tError, TaskEventFail, tError, true},

	{tInProgress, TaskEventBlock, tBlocked, false},
	{tBlocked, TaskEventBlock, tBlocked, true},

	{tInProgress, TaskEventWait, tWaiting, false},
	{tWaiting, TaskEventWait, tWaiting, true},

	{tInProgress, TaskEventYield, tPending, false},
	{tPending, TaskEventYield, tPending, true},

	{tPending, TaskEventCancel, tCancelled, false},
	{tInProgress, TaskEventCancel, tCancelled, false},
	{tWaiting, TaskEventCancel, tCancelled, false},
	{tBlocked, TaskEventCancel, tCancelled, false},
	{tError, TaskEventCancel, tCancelled, false},

	{tPending, TaskEventResolve, tResolved, false},
	{tWaiting, TaskEventResolve, tResolved, false},
	{tBlocked, TaskEventResolve, tResolved, false},
	{tError, TaskEventResolve, tResolved, false},

	{tError, TaskEventRetry, tPending, false},
	{tBlocked, TaskEventRetry, tPending, false},

	{tPending, TaskEventExpire, tError, false},
	{tInProgress, TaskEventExpire, tError, false},
	{tWaiting, TaskEventExpire, tError, false},
	{tError, TaskEventExpire, tError, true},
}

// stepRows is the step machine. Idempotent rows have To == From.
var stepRows = []StepRow{
	{sPending, StepEventClaim, sInProgress, false},
	{sWaiting, StepEventClaim, sInProgress, false},

	{sInProgress, StepEventSucceed, sComplete, false},
	{sComplete, StepEventSucceed, sComplete, true},
	// The late success of an attempt the rescuer presumed lost (its lease
	// expired while its runner was alive) before any later attempt began.
	{sWaiting, StepEventSucceed, sComplete, false},

	{sInProgress, StepEventFailRetryable, sWaiting, false},

	{sInProgress, StepEventFailPermanent, sError, false},
	{sError, StepEventFailPermanent, sError, true},

	{sInProgress, StepEventRelease, sPending, false},

	{sError, StepEventRetry, sPending, false},
	{sWaiting, StepEventRetry, sPending, false},

	{sPending, StepEventResolve, sResolved, false},
	{sInProgress, StepEventResolve, sResolved, false},
	{sWaiting, StepEventResolve, sResolved, false},
	{sError, StepEventResolve, sResolved, false},

	{sInProgress, StepEventSkip, sSkipped, false},

	{sInProgress, StepEventThrottle, sWaiting, false},
	{sSkipped, StepEventSkip, sSkipped, true},

	{sInProgress, StepEventExpand, sPending, false},

	{sPending, StepEventCancel, sCancelled, false},
	{sInProgress, StepEventCancel, sCancelled, false},
	{sWaiting, StepEventCancel, sCancelled, false},
	{sError, StepEventCancel, sCancelled, false},
}

type taskKey struct {
	from taskertype.TaskState
	ev   TaskEvent
}

type stepKey struct {
	from taskertype.StepState
	ev   StepEvent
}

var (
	taskIndex   = indexTask(taskRows)
	stepIndex   = indexStep(stepRows)
	taskSources = sourcesTask(taskRows)
	stepSources = sourcesStep(stepRows)
)

func indexTask(rows []TaskRow) map[taskKey]TaskRow {
	m := make(map[taskKey]TaskRow, len(rows))
	for _, r := range rows {
		m[taskKey{r.From, r.Event}] = r
	}
	return m
}

func indexStep(rows []StepRow) map[stepKey]StepRow {
	m := make(map[stepKey]StepRow, len(rows))
	for _, r := range rows {
		m[stepKey{r.From, r.Event}] = r
	}
	return m
}

func sourcesTask(rows []TaskRow) map[TaskEvent][]taskertype.TaskState {
	m := make(map[TaskEvent][]taskertype.TaskState)
	for _, s := range taskertype.TaskStates() { // lifecycle order
		for _, r := range rows {
			if r.From == s && !r.Idempotent {
				m[r.Event] = append(m[r.Event], s)
			}
		}
	}
	return m
}

func sourcesStep(rows []StepRow) map[StepEvent][]taskertype.StepState {
	m := make(map[StepEvent][]taskertype.StepState)
	for _, s := range taskertype.StepStates() { // lifecycle order
		for _, r := range rows {
			if r.From == s && !r.Idempotent {
				m[r.Event] = append(m[r.Event], s)
			}
		}
	}
	return m
}

// TaskRows returns a copy of the task machine's rows, grouped by event.
func TaskRows() []TaskRow { return slices.Clone(taskRows) }

// StepRows returns a copy of the step machine's rows, grouped by event.
func StepRows() []StepRow { return slices.Clone(stepRows) }

// Task decides what ev does to a task in state from. It returns the new
// state and changed = true for a move, (from, false, nil) for an idempotent
// repeat, and (from, false, *taskertype.InvalidTransitionError) for anything
// else, unknown states and events included. The error's ID is left 0 for
// the caller to fill.
func Task(from taskertype.TaskState, ev TaskEvent) (to taskertype.TaskState, changed bool, err error) {
	r, ok := taskIndex[taskKey{from, ev}]
	if !ok {
		return from, false, &taskertype.InvalidTransitionError{Entity: "task", From: string(from), Event: string(ev)}
	}
	return r.To, !r.Idempotent, nil
}

// Step decides what ev does to a step in state from, with the same contract
// as Task (the error's Entity is "step").
func Step(from taskertype.StepState, ev StepEvent) (to taskertype.StepState, changed bool, err error) {
	r, ok := stepIndex[stepKey{from, ev}]
	if !ok {
		return from, false, &taskertype.InvalidTransitionError{Entity: "step", From: string(from), Event: string(ev)}
	}
	return r.To, !r.Idempotent, nil
}

// TaskSources returns the states from which ev changes a task's state, in
// taskertype.TaskStates() order: the guard of the store's
// UPDATE ... WHERE state IN (sources). Idempotent rows are not sources. An
// unknown event has none (nil).
func TaskSources(ev TaskEvent) []taskertype.TaskState { return slices.Clone(taskSources[ev]) }

// StepSources returns the states from which ev changes a step's state, in
// taskertype.StepStates() order (see TaskSources).
func StepSources(ev StepEvent) []taskertype.StepState { return slices.Clone(stepSources[ev]) }
