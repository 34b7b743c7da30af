package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/tasker-systems/tasker/internal/statemachine"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/taskertype"
)

// Deadlines. A template's timeout_seconds bounds how long each of its tasks
// may take, counted from the task's creation, or from when a delayed task
// was due (an operator's retry does not restart it). A task unfinished at its deadline expires: its unfinished
// steps are cancelled and it ends in error (event expire), in one
// transaction. Three things make that happen on time:
//
//   - the coordinator running the task (taskRun) arms a timer for the
//     deadline; when it fires, the handlers' context is cancelled and the
//     task expires once they have returned (or been given up);
//   - a task that waits out a retry backoff is re-enqueued no later than
//     its deadline (judge), and a coordinator that picks up a task past its
//     deadline expires it at once (drive);
//   - every runner's rescue pass (RescueInterval) expires overdue tasks that
//     no coordinator of its own holds: a task whose steps run in an external
//     worker, a backlog the runners never reached.
//
// An attempt running in an external (pull) worker is cancelled in the
// database: its step is cancelled, its lease can no longer be extended, and
// its result is refused when it reports.

// deadline is when task must be finished, and the timeout_seconds it comes
// from; ok is false when its template sets no timeout (or is not loaded here).
func (e *Engine) deadline(task *taskertype.Task) (at time.Time, timeout int, ok bool) {
	return deadlineOf(e.template(task), task)
}

// deadlineOf is deadline with task's template already looked up (nil: not
// loaded here).
func deadlineOf(tmpl *template.Template, task *taskertype.Task) (at time.Time, timeout int, ok bool) {
	if tmpl == nil || tmpl.TimeoutSeconds <= 0 {
		return time.Time{}, 0, false
	}
	from := task.CreatedAt
	if task.RunAt != nil && task.RunAt.After(from) {
		from = *task.RunAt // a delayed task's time counts from when it was due
	}
	return from.Add(time.Duration(tmpl.TimeoutSeconds) * time.Second), tmpl.TimeoutSeconds, true
}

// overdue says whether task is unfinished past its deadline at now.
func (e *Engine) overdue(task *taskertype.Task, now time.Time) bool {
	return overdueOf(e.template(task), task, now)
}

// overdueOf is overdue with task's template already looked up.
func overdueOf(tmpl *template.Template, task *taskertype.Task, now time.Time) bool {
	at, _, ok := deadlineOf(tmpl, task)
	return ok && !now.Before(at)
}

// expire ends an overdue task: its unfinished steps are cancelled and the
// task moves to error, in one transaction; step.cancelled and task.failed
// (with "expired": true) are published. A task already finished, or expired
// by another runner meanwhile, is left as it is and reported untouched.
func (e *Engine) expire(ctx context.Context, task *taskertype.Task, res *HandleResult) (*HandleResult, error) {
	at, timeout, _ := e.deadline(task)
	reason := fmt.Sprintf("deadline exceeded: timeout_seconds %d elapsed at %s", timeout, at.UTC().Format(time.RFC3339))
	tr, moved, err := e.endTask(context.WithoutCancel(ctx), task.ID, statemachine.TaskEventExpire, reason, e.cfg.Owner)
	if err != nil {
		return res, fmt.Errorf("expire task %d: %w", task.ID, err)
	}
	if !tr.Changed { // finished, or expired by another runner, meanwhile
		return untouched(res, tr.State), nil
	}
	now := e.now()
	events := cancelledEvents(task.ID, moved, reason, e.cfg.Owner, now)
	events = append(events, taskertype.Event{Kind: taskertype.EventTaskFailed, TaskID: task.ID, Time: now,
		Data: map[string]any{"reason": reason, "expired": true, "timeout_seconds": timeout,
			"namespace": task.Namespace, "name": task.Name, "version": task.Version}})
	e.bus.Publish(events...)
	res.Status, res.Outcome, res.Reason, res.NextRunAt = tr.State, ActionExpire, reason, nil
	return res, nil
}

// cancelledStep names a step endTask cancelled.
type cancelledStep struct {
	id   int64
	name string
}

// endTask applies a task event that ends the task with its unfinished steps
// (cancel, expire): every step the cancel event may move is cancelled and
// the task transition applied, with its queue record removed, in one
// transaction. moved lists the steps cancelled; nothing moves when the task
// is not in a source state of ev (tr.Changed false).
func (e *Engine) endTask(ctx context.Context, taskID int64, ev statemachine.TaskEvent, reason, actor string) (
	tr *store.TransitionResult, moved []cancelledStep, err error) {
	steps, err := e.store.StepList(ctx, taskID)
	if err != nil {
		return nil, nil, err
	}
	var ids []int64
	names := make(map[int64]string, len(steps))
	for _, st := range steps {
		names[st.ID] = st.Name
		if _, changed, err := statemachine.Step(st.State, statemachine.StepEventCancel); err == nil && changed {
			ids = append(ids, st.ID)
		}
	}
	to, err := taskTarget(ev)
	if err != nil {
		return nil, nil, err
	}
	now := e.now()
	res, err := e.store.StepTransition(ctx, &store.StepTransitionParams{
		TaskID: taskID, StepIDs: ids, From: statemachine.StepSources(statemachine.StepEventCancel),
		To: stepTarget(statemachine.StepEventCancel), Event: string(statemachine.StepEventCancel), Reason: reason,
		Actor: actor, Now: now,
		Task: &store.TaskTransitionParams{TaskID: taskID, From: statemachine.TaskSources(ev),
			To: to, Event: string(ev), Reason: reason, Actor: actor, Now: now,
			Queue: store.QueueOp{Kind: store.QueueDelete}},
	})
	if err != nil {
		return nil, nil, err
	}
	if res.Task == nil { // the task left ev's sources meanwhile: nothing was written
		task, err := e.store.TaskGet(ctx, taskID)
		if err != nil {
			return nil, nil, err
		}
		return &store.TransitionResult{State: task.State}, nil, nil
	}
	for _, id := range res.Moved {
		moved = append(moved, cancelledStep{id: id, name: names[id]})
	}
	return res.Task, moved, nil
}

// cancelledEvents are the step.cancelled events of steps endTask moved.
func cancelledEvents(taskID int64, moved []cancelledStep, reason, actor string, now time.Time) []taskertype.Event {
	events := make([]taskertype.Event, 0, len(moved)+1)
	for _, st := range moved {
		events = append(events, taskertype.Event{Kind: taskertype.EventStepCancelled, TaskID: taskID, StepID: st.id,
			StepName: st.name, Time: now, Data: map[string]any{"reason": reason, "actor": actor}})
	}
	return events
}

// overdueStates are the task states a deadline applies to: those the expire
// event leaves (a blocked task waits for an operator, not for the engine).
var overdueStates = []taskertype.TaskState{taskertype.TaskStatePending, taskertype.TaskStateInProgress,
	taskertype.TaskStateWaitingForRetry}

// overduePage bounds the tasks of one template a sweep reads per query;
// overduePages bounds the queries per template and sweep.
const (
	overduePage  = 100
	overduePages = 10
)

// expireOverdue is the rescue pass's deadline sweep: it expires the
// unfinished tasks of every loaded template with a timeout_seconds whose
// deadline has passed. Tasks a coordinator is running (here or elsewhere) are
// also expired by it: both run at the deadline, and the second to try finds
// the task in error already.
func (e *Engine) expireOverdue(ctx context.Context) (int, error) {
	// The shortest timeout of each template name: the list is by name, and
	// each task is then checked against its own version's deadline.
	shortest := map[[2]string]int{}
	for _, t := range e.cfg.Templates.List() {
		if t.TimeoutSeconds <= 0 {
			continue
		}
		k := [2]string{t.Namespace, t.Name}
		if cur, ok := shortest[k]; !ok || t.TimeoutSeconds < cur {
			shortest[k] = t.TimeoutSeconds
		}
	}
	expired := 0
	for k, timeout := range shortest {
		before := e.now().Add(-time.Duration(timeout) * time.Second)
		var afterID int64
		for range overduePages {
			tasks, err := e.store.TaskList(ctx, &store.TaskListParams{States: overdueStates, Namespace: k[0], Name: k[1],
				CreatedBefore: &before, AfterID: afterID, Limit: overduePage})
			if err != nil {
				return expired, fmt.Errorf("list overdue tasks of %s/%s: %w", k[0], k[1], err)
			}
			for _, task := range tasks {
				afterID = task.ID
				if !e.overdue(task, e.now()) {
					continue
				}
				res, err := e.expire(ctx, task, &HandleResult{TaskID: task.ID})
				if err != nil {
					return expired, err
				}
				if res.Outcome == ActionExpire {
					expired++
				}
			}
			if len(tasks) < overduePage {
				break
			}
		}
	}
	return expired, nil
}
