package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tasker-systems/tasker/internal/statemachine"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/taskertype"
)

// Actor is taskertype.Actor.
type Actor = taskertype.Actor

// actorWho is the name recorded for a: "operator" when it names nobody.
func actorWho(a Actor) string { return cmp.Or(a.Who, "operator") }

// operable checks the actor, loads the task and checks that ev may apply to
// it now.
func (e *Engine) operable(ctx context.Context, taskID int64, a Actor, ev statemachine.TaskEvent) (*taskertype.Task, error) {
	if err := checkActor(a); err != nil {
		return nil, err
	}
	task, err := e.store.TaskGet(ctx, taskID)
	if err != nil {
		return nil, err
	}
	if _, _, err := statemachine.Task(task.State, ev); err != nil {
		return nil, withID(err, taskID)
	}
	return task, nil
}

// CancelTask cancels a task and every unfinished step of it. Cancelling a
// task that is already terminal is an InvalidTransitionError.
func (e *Engine) CancelTask(ctx context.Context, taskID int64, a Actor) (*taskertype.Task, error) {
	if _, err := e.operable(ctx, taskID, a, statemachine.TaskEventCancel); err != nil {
		return nil, err
	}
	reason := cmp.Or(a.Reason, "cancelled by operator")
	tr, moved, err := e.endTask(ctx, taskID, statemachine.TaskEventCancel, reason, actorWho(a))
	if err != nil {
		return nil, err
	}
	if !tr.Changed {
		return nil, e.raced(ctx, taskID, statemachine.TaskEventCancel)
	}
	now := e.now()
	events := cancelledEvents(taskID, moved, reason, actorWho(a), now)
	events = append(events, taskertype.Event{Kind: taskertype.EventTaskCancelled, TaskID: taskID, Time: now,
		Data: map[string]any{"reason": reason, "actor": actorWho(a), "steps_cancelled": len(moved)}})
	e.bus.Publish(events...)
	return e.store.TaskGet(ctx, taskID)
}

// ResolveTask marks a task resolved_manually: an operator declares it done
// (for example after fixing its effects by hand). It is allowed while the
// task is not running (pending, waiting for retry, blocked or failed); its
// steps keep their states, its queue record is removed, and
// task.resolved_manually is published. A running task must be cancelled
// first.
func (e *Engine) ResolveTask(ctx context.Context, taskID int64, a Actor) (*taskertype.Task, error) {
	if _, err := e.operable(ctx, taskID, a, statemachine.TaskEventResolve); err != nil {
		return nil, err
	}
	reason := cmp.Or(a.Reason, "resolved by operator")
	tr, err := e.taskEvent(ctx, taskID, statemachine.TaskEventResolve, reason, actorWho(a), store.QueueOp{Kind: store.QueueDelete})
	if err != nil {
		return nil, err
	}
	if !tr.Changed {
		return nil, e.raced(ctx, taskID, statemachine.TaskEventResolve)
	}
	e.bus.Publish(taskertype.Event{Kind: taskertype.EventTaskResolved, TaskID: taskID, Time: e.now(),
		Data: map[string]any{"reason": reason, "actor": actorWho(a)}})
	return e.store.TaskGet(ctx, taskID)
}

// raced reports a guarded transition that matched no row because the state
// changed between the read and the write.
func (e *Engine) raced(ctx context.Context, taskID int64, ev statemachine.TaskEvent) error {
	task, err := e.store.TaskGet(ctx, taskID)
	if err != nil {
		return err
	}
	return &taskertype.InvalidTransitionError{Entity: "task", ID: taskID, From: string(task.State), Event: string(ev)}
}

func withID(err error, id int64) error {
	var it *taskertype.InvalidTransitionError
	if errors.As(err, &it) {
		cp := *it
		cp.ID = id
		return &cp
	}
	return err
}

// findStep returns the step of a task with the given name.
func (e *Engine) findStep(ctx context.Context, taskID int64, name string) (*taskertype.Step, error) {
	steps, err := e.store.StepList(ctx, taskID)
	if err != nil {
		return nil, err
	}
	for _, st := range steps {
		if st.Name == name {
			return st, nil
		}
	}
	if _, err := e.store.TaskGet(ctx, taskID); err != nil {
		return nil, err
	}
	return nil, &taskertype.StepNotFoundError{TaskID: taskID, Name: name}
}

// RetrySteps moves the named failed steps (all steps in error or waiting for
// retry when names is empty) back to pending with their attempts reset, and
// re-enqueues the task (error or blocked tasks go back to pending).
func (e *Engine) RetrySteps(ctx context.Context, taskID int64, names []string, a Actor) ([]string, error) {
	if err := checkActor(a); err != nil {
		return nil, err
	}
	task, err := e.store.TaskGet(ctx, taskID)
	if err != nil {
		return nil, err
	}
	steps, err := e.store.StepList(ctx, taskID)
	if err != nil {
		return nil, err
	}
	byName := map[string]*taskertype.Step{}
	for _, st := range steps {
		byName[st.Name] = st
	}
	var ids []int64
	var moved []string
	if len(names) == 0 {
		for _, st := range steps {
			if _, _, err := statemachine.Step(st.State, statemachine.StepEventRetry); err == nil {
				ids, moved = append(ids, st.ID), append(moved, st.Name)
			}
		}
		if len(ids) == 0 {
			return nil, &taskertype.InvalidTransitionError{Entity: "task", ID: taskID, From: string(task.State),
				Event: "retry (no step is in error or waiting for retry)"}
		}
	}
	seen := make(map[string]bool, len(names))
	for _, name := range names {
		if seen[name] {
			continue // naming a step twice retries it once
		}
		seen[name] = true
		st := byName[name]
		if st == nil {
			return nil, &taskertype.StepNotFoundError{TaskID: taskID, Name: name}
		}
		if _, _, err := statemachine.Step(st.State, statemachine.StepEventRetry); err != nil {
			return nil, withID(err, st.ID)
		}
		ids, moved = append(ids, st.ID), append(moved, st.Name)
	}
	reason := cmp.Or(a.Reason, "retried by operator")
	now := e.now()
	taskMove, err := e.reopen(task, reason, a, now, "retry")
	if err != nil {
		return nil, err
	}
	res, err := e.store.StepTransition(ctx, &store.StepTransitionParams{
		TaskID: taskID, StepIDs: ids, From: statemachine.StepSources(statemachine.StepEventRetry),
		To: stepTarget(statemachine.StepEventRetry), Event: string(statemachine.StepEventRetry), Reason: reason,
		Actor: actorWho(a), Now: now, ResetAttempts: true, Task: taskMove,
		Queue: store.QueueOp{Kind: store.QueueUpsert, Operation: OperationEnqueue, RunAt: now, Priority: task.Priority, Reason: reason},
	})
	if err != nil {
		return nil, err
	}
	if len(res.Moved) != len(ids) {
		return nil, fmt.Errorf("retry steps of task %d: %d of %d steps changed state meanwhile: %w",
			taskID, len(ids)-len(res.Moved), len(ids), taskertype.ErrInvalidTransition)
	}
	events := make([]taskertype.Event, 0, len(moved))
	for i, name := range moved {
		events = append(events, taskertype.Event{Kind: taskertype.EventStepRetried, TaskID: taskID, StepID: ids[i],
			StepName: name, Time: now, Data: map[string]any{"reason": reason, "actor": actorWho(a)}})
	}
	e.bus.Publish(events...)
	e.enqueued(ctx, EnqueueRequest{TaskID: taskID, Operation: OperationEnqueue, Priority: task.Priority, Reason: reason, Time: now})
	return moved, nil
}

// ResolveStep marks a step resolved_manually: its children may run as if it
// had completed. The task is re-enqueued so that they do.
func (e *Engine) ResolveStep(ctx context.Context, taskID int64, name string, a Actor) (*taskertype.Step, error) {
	if err := checkActor(a); err != nil {
		return nil, err
	}
	task, err := e.store.TaskGet(ctx, taskID)
	if err != nil {
		return nil, err
	}
	st, err := e.findStep(ctx, taskID, name)
	if err != nil {
		return nil, err
	}
	if _, _, err := statemachine.Step(st.State, statemachine.StepEventResolve); err != nil {
		return nil, withID(err, st.ID)
	}
	reason := cmp.Or(a.Reason, "resolved by operator")
	now := e.now()
	taskMove, err := e.reopen(task, reason, a, now, "resolve step")
	if err != nil {
		return nil, err
	}
	res, err := e.store.StepTransition(ctx, &store.StepTransitionParams{
		TaskID: taskID, StepIDs: []int64{st.ID}, From: statemachine.StepSources(statemachine.StepEventResolve),
		To: stepTarget(statemachine.StepEventResolve), Event: string(statemachine.StepEventResolve), Reason: reason,
		Actor: actorWho(a), Now: now, Task: taskMove,
		Queue: store.QueueOp{Kind: store.QueueUpsert, Operation: OperationEnqueue, RunAt: now, Priority: task.Priority, Reason: reason},
	})
	if err != nil {
		return nil, err
	}
	if len(res.Moved) == 0 {
		cur, err := e.findStep(ctx, taskID, name)
		if err != nil {
			return nil, err
		}
		return nil, &taskertype.InvalidTransitionError{Entity: "step", ID: st.ID, From: string(cur.State), Event: "resolve"}
	}
	e.bus.Publish(taskertype.Event{Kind: taskertype.EventStepResolved, TaskID: taskID, StepID: st.ID, StepName: name,
		Time: now, Data: map[string]any{"reason": reason, "actor": actorWho(a)}})
	e.enqueued(ctx, EnqueueRequest{TaskID: taskID, Operation: OperationEnqueue, Priority: task.Priority, Reason: reason, Time: now})
	return e.findStep(ctx, taskID, name)
}

// reopen returns the task transition that goes with an operator's step
// change: a failed or blocked task goes back to pending (retry), a task
// waiting for retry is handed back to pending (yield) so that it runs now, a
// pending or running task stays as it is, and a finished task refuses.
func (e *Engine) reopen(task *taskertype.Task, reason string, a Actor, now time.Time, op string) (*store.TaskTransitionParams, error) {
	if _, changed, err := statemachine.Task(task.State, statemachine.TaskEventRetry); err == nil && changed {
		to, _ := taskTarget(statemachine.TaskEventRetry)
		return &store.TaskTransitionParams{TaskID: task.ID, From: []taskertype.TaskState{task.State},
			To: to, Event: string(statemachine.TaskEventRetry), Reason: reason, Actor: actorWho(a), Now: now}, nil
	}
	switch task.State {
	case taskertype.TaskStateWaitingForRetry:
		return &store.TaskTransitionParams{TaskID: task.ID, From: []taskertype.TaskState{task.State},
			To: taskertype.TaskStatePending, Event: string(statemachine.TaskEventYield), Reason: reason, Actor: actorWho(a), Now: now}, nil
	case taskertype.TaskStatePending, taskertype.TaskStateInProgress:
		return nil, nil
	}
	return nil, &taskertype.InvalidTransitionError{Entity: "task", ID: task.ID, From: string(task.State), Event: op}
}
