package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/tasker-systems/tasker/internal/statemachine"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/taskertype"
)

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
	// ActionNone: the task was not runnable (terminal, blocked, in error).
	ActionNone Action = "none"
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

// finalize applies the finalizer's decision. ActionContinue sends the task
// back through the coordinator loop.
func (e *Engine) finalize(ctx context.Context, task *taskertype.Task, res *HandleResult) (*HandleResult, error) {
	for {
		if err := e.decide(ctx, task, res, e.cfg.Owner); err != nil || res.Outcome != ActionContinue {
			return res, err
		}
		if ctx.Err() != nil {
			return e.yield(task, res, "coordinator shutting down")
		}
		n, stopped, err := e.runSteps(ctx, task, nil, time.Time{})
		res.StepsExecuted += n
		if err != nil {
			return res, err
		}
		if stopped {
			return e.yield(task, res, "coordinator shutting down")
		}
	}
}

// decide runs the TaskFinalizer once: it summarizes the task's steps,
// decides, and applies the decision (task transition, enqueue record,
// events) as actor. ActionContinue changes nothing: the caller runs the
// ready steps (the Go coordinator loop, or an external worker's next claim).
func (e *Engine) decide(ctx context.Context, task *taskertype.Task, res *HandleResult, actor string) error {
	dbctx := context.WithoutCancel(ctx)
	sum, err := e.store.TaskSummary(dbctx, task.ID, e.now())
	if err != nil {
		return err
	}
	d := Decide(sum)
	res.Outcome, res.Reason = d.Action, d.Reason
	var ev statemachine.TaskEvent
	var kind taskertype.EventKind
	queue := store.QueueOp{Kind: store.QueueDelete}
	switch d.Action {
	case ActionContinue:
		return nil
	case ActionElsewhere:
		res.Status = taskertype.TaskStateInProgress
		return nil
	case ActionFail:
		ev, kind = statemachine.TaskEventFail, taskertype.EventTaskFailed
	case ActionComplete:
		ev, kind = statemachine.TaskEventComplete, taskertype.EventTaskCompleted
	case ActionBlock:
		ev, kind = statemachine.TaskEventBlock, taskertype.EventTaskBlocked
	case ActionWait:
		ev = statemachine.TaskEventWait
		runAt := e.now()
		if d.RetryAt != nil && d.RetryAt.After(runAt) {
			runAt = *d.RetryAt
		}
		queue = store.QueueOp{Kind: store.QueueUpsert, Operation: OperationReenqueue, RunAt: runAt,
			Priority: task.Priority, Reason: d.Reason}
		res.NextRunAt = &runAt
	}
	tr, err := e.taskEvent(dbctx, task.ID, ev, d.Reason, actor, queue)
	if err != nil {
		return err
	}
	res.Status = tr.State
	if !tr.Changed {
		// An operator moved the task meanwhile (cancelled, resolved).
		res.Outcome, res.Reason, res.NextRunAt = ActionNone, fmt.Sprintf("task is %s", tr.State), nil
		return nil
	}
	now := e.now()
	if kind != "" {
		e.bus.Publish(taskertype.Event{Kind: kind, TaskID: task.ID, Time: now, Data: map[string]any{"reason": d.Reason}})
	}
	if d.Action == ActionWait {
		e.enqueued(dbctx, EnqueueRequest{TaskID: task.ID, Operation: OperationReenqueue, Priority: task.Priority,
			DelaySeconds: max(res.NextRunAt.Sub(now).Seconds(), 0), Reason: d.Reason, Time: now})
	}
	return nil
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
