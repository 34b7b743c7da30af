package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/tasker-systems/tasker/internal/statemachine"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/taskertype"
)

// Action is taskertype.Action: the TaskFinalizer's decision.
type Action = taskertype.Action

// Finalizer decisions (see taskertype).
const (
	ActionFail      = taskertype.ActionFail
	ActionContinue  = taskertype.ActionContinue
	ActionElsewhere = taskertype.ActionElsewhere
	ActionWait      = taskertype.ActionWait
	ActionComplete  = taskertype.ActionComplete
	ActionBlock     = taskertype.ActionBlock
	ActionYield     = taskertype.ActionYield
	ActionExpire    = taskertype.ActionExpire
	ActionNone      = taskertype.ActionNone
)

// Decision is what the finalizer concluded from a task's step summary.
type Decision struct {
	Action  Action
	Reason  string
	RetryAt *time.Time
}

// Decide is the TaskFinalizer's decision table, a pure function of the step
// summary: failure before readiness, then ready, running elsewhere, waiting
// for retry, complete, blocked.
func Decide(sum *store.TaskSummary) Decision {
	switch {
	case sum.Error > 0:
		return Decision{Action: ActionFail, Reason: fmt.Sprintf("%d step(s) failed permanently or exhausted their attempts", sum.Error)}
	case sum.Ready > 0:
		return Decision{Action: ActionContinue, Reason: fmt.Sprintf("%d step(s) ready", sum.Ready)}
	case sum.InProgress > 0:
		return Decision{Action: ActionElsewhere, Reason: fmt.Sprintf("%d step(s) running elsewhere", sum.InProgress)}
	case sum.WaitingForRetry > 0:
		return Decision{Action: ActionWait, RetryAt: sum.EarliestRetryAt,
			Reason: fmt.Sprintf("%d step(s) waiting for retry", sum.WaitingForRetry)}
	case sum.Complete == sum.Total:
		return Decision{Action: ActionComplete, Reason: fmt.Sprintf("all %d step(s) complete", sum.Total)}
	default:
		return Decision{Action: ActionBlock, Reason: fmt.Sprintf("%d step(s) pending but none can run (%d cancelled)", sum.Pending, sum.Cancelled)}
	}
}

// noRetry says why a failed attempt is not retried; retryAllowed ("") when
// it is.
type noRetry string

// Why a failed attempt is not retried.
const (
	retryAllowed        noRetry = ""
	noRetryPermanent    noRetry = "permanent error"
	noRetryNotRetryable noRetry = "step is not retryable"
	noRetryExhausted    noRetry = "attempts exhausted"
)

// retryDecision is the one place that decides whether a step whose attempt
// failed gets another: never after a permanent error, never for a step that
// is not retryable, never once max_attempts attempts have run. The
// coordinator (and the pull API through it) and the lease rescuer ask it;
// the store's readiness test (the "ready" fragment of
// internal/store/sqlcore/fragments.sql) holds the same rule for claiming a
// waiting step, as a guard.
func retryDecision(attempts, maxAttempts int, retryable, permanent bool) noRetry {
	switch {
	case permanent:
		return noRetryPermanent
	case !retryable:
		return noRetryNotRetryable
	case attempts >= maxAttempts:
		return noRetryExhausted
	}
	return retryAllowed
}

// decide runs the TaskFinalizer once: it summarizes the task's steps,
// decides, and applies the decision (task transition, enqueue record,
// events) as actor. ActionContinue changes nothing: the caller runs the
// ready steps (the Go coordinator loop, or an external worker's next claim).
// It goes through the record batcher with no outcomes: the summary and the
// transition share one transaction under the task row's lock (and a batch
// with other finalizers).
func (e *Engine) decide(ctx context.Context, task *taskertype.Task, res *HandleResult, actor string) error {
	dbctx := context.WithoutCancel(ctx)
	_, v, tr, err := e.stepRecordFinalize(dbctx, &store.StepRecordParams{TaskID: task.ID, Owner: actor, Now: e.now()}, task)
	if err != nil {
		return err
	}
	e.settle(dbctx, task, res, v, tr)
	return nil
}

// verdict is a TaskFinalizer decision with the transition that applies it.
type verdict struct {
	d     Decision
	ev    statemachine.TaskEvent // "" for continue and running elsewhere
	kind  taskertype.EventKind   // published once the transition commits
	queue store.QueueOp
	runAt *time.Time // retry_viable: when the task is due again
	p     *store.TaskTransitionParams
}

// judge decides from a summary and prepares the transition, without
// writing anything (the record batch runs it between the statements of
// its transaction).
func (e *Engine) judge(task *taskertype.Task, sum *store.TaskSummary, actor string) verdict {
	v := verdict{d: Decide(sum), queue: store.QueueOp{Kind: store.QueueDelete}}
	switch v.d.Action {
	case ActionContinue, ActionElsewhere:
		return v
	case ActionFail:
		v.ev, v.kind = statemachine.TaskEventFail, taskertype.EventTaskFailed
	case ActionComplete:
		v.ev, v.kind = statemachine.TaskEventComplete, taskertype.EventTaskCompleted
	case ActionBlock:
		v.ev, v.kind = statemachine.TaskEventBlock, taskertype.EventTaskBlocked
	case ActionWait:
		v.ev = statemachine.TaskEventWait
		runAt := e.now()
		if v.d.RetryAt != nil && v.d.RetryAt.After(runAt) {
			runAt = *v.d.RetryAt
		}
		if at, _, ok := e.deadline(task); ok && at.Before(runAt) {
			runAt = at // a coordinator picks the task up at its deadline, to expire it
		}
		v.runAt = &runAt
		v.queue = store.QueueOp{Kind: store.QueueUpsert, Operation: OperationReenqueue, RunAt: runAt,
			Priority: task.Priority, Reason: v.d.Reason}
	}
	to, err := taskTarget(v.ev)
	if err != nil { // cannot happen: every event above has sources
		panic(err)
	}
	v.p = &store.TaskTransitionParams{TaskID: task.ID, From: statemachine.TaskSources(v.ev), To: to,
		Event: string(v.ev), Reason: v.d.Reason, Actor: actor, Now: e.now(), Queue: v.queue}
	return v
}

// transition is the task transition that applies the verdict, or nil.
func (v verdict) transition() *store.TaskTransitionParams { return v.p }

// settle reports an applied verdict on res and publishes its events; tr is
// the transition's result (nil when the verdict needs none).
func (e *Engine) settle(ctx context.Context, task *taskertype.Task, res *HandleResult, v verdict, tr *store.TransitionResult) {
	res.Outcome, res.Reason = v.d.Action, v.d.Reason
	if v.ev == "" {
		if v.d.Action == ActionElsewhere {
			res.Status = taskertype.TaskStateInProgress
		}
		return
	}
	res.Status, res.NextRunAt = tr.State, v.runAt
	if !tr.Changed {
		untouched(res, tr.State) // an operator moved the task meanwhile (cancelled, resolved)
		return
	}
	now := e.now()
	if v.kind != "" {
		e.bus.Publish(taskertype.Event{Kind: v.kind, TaskID: task.ID, Time: now, Data: map[string]any{"reason": v.d.Reason,
			"namespace": task.Namespace, "name": task.Name, "version": task.Version}})
	}
	if v.d.Action == ActionWait {
		e.enqueued(ctx, EnqueueRequest{TaskID: task.ID, Operation: OperationReenqueue, Priority: task.Priority,
			DelaySeconds: max(res.NextRunAt.Sub(now).Seconds(), 0), Reason: v.d.Reason, Time: now})
	}
}

// untouched reports on res that the task was left as it is, in state: not
// runnable (terminal, blocked, failed) or moved meanwhile by an operator.
func untouched(res *HandleResult, state taskertype.TaskState) *HandleResult {
	res.Status, res.Outcome, res.Reason, res.NextRunAt = state, ActionNone, fmt.Sprintf("task is %s", state), nil
	return res
}

// yield hands a task back to the queue, due now, after a shutdown.
func (e *Engine) yield(task *taskertype.Task, res *HandleResult, reason string) (*HandleResult, error) {
	ctx := context.Background()
	now := e.now()
	tr, err := e.taskEvent(ctx, task.ID, statemachine.TaskEventYield, reason, e.cfg.Owner,
		store.QueueOp{Kind: store.QueueUpsert, Operation: OperationReenqueue, RunAt: now, Priority: task.Priority, Reason: reason})
	if err != nil {
		return res, err
	}
	res.Outcome, res.Reason, res.Status, res.NextRunAt = ActionYield, reason, tr.State, &now
	if tr.Changed {
		e.enqueued(ctx, EnqueueRequest{TaskID: task.ID, Operation: OperationReenqueue, Priority: task.Priority,
			Reason: reason, Time: now})
	}
	return res, nil
}
