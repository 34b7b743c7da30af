package engine

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tasker-systems/tasker/internal/statemachine"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/taskertype"
)

// Concurrency keys (docs/flow-control.md#concurrency-keys). A template's
// `concurrency:` block gives each of its tasks a key computed from the
// task's context at creation (stored on the task with the limit and the
// policy). A pending task with a key starts only through admission
// (store.Store.TaskAdmit): serialized per key across every runner and
// process, the running tasks with the key are counted and the task started
// when under the limit; at the limit the policy decides: queue (the task
// stays pending, its queue record parked until a task with its key stops
// running, which makes it due in the finishing transaction), cancel_newest
// or cancel_oldest.
//
// Admission runs before the coordinator's start-and-claim (Handle) and the
// pull API's (ClaimSteps), and only when some loaded template declares a
// key (keysInUse): without one nothing changes on the hot path. A task a
// runner admitted is in progress; the start-and-claim that follows finds it
// there and claims its steps as for any started task.

// concurrencyRecheck is how long a parked task's queue record waits at
// most: a task with its key that stops running makes it due at once, so
// this is only a floor against the unforeseen.
const concurrencyRecheck = 5 * time.Minute

// concurrencyUse caches whether any loaded template declares a key, per
// generation of the template registry.
type concurrencyUse struct {
	mu      sync.Mutex
	checked bool
	gen     uint64
	used    bool
}

// keysInUse reports whether any template loaded here declares a
// concurrency key (read again when templates are added).
func (e *Engine) keysInUse() bool {
	gen, _ := e.cfg.Templates.Watch()
	u := &e.conc
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.checked || u.gen != gen {
		u.used = false
		for _, t := range e.cfg.Templates.List() {
			if t.Concurrency != nil {
				u.used = true
				break
			}
		}
		u.checked, u.gen = true, gen
	}
	return u.used
}

// taskConcurrency computes the key of a new task of tmpl (nil when the
// template declares none); a reference the context cannot satisfy is a
// *taskertype.RequestError.
func taskConcurrency(tmpl *template.Template, taskCtx []byte) (*store.TaskConcurrency, error) {
	if tmpl.Concurrency == nil {
		return nil, nil
	}
	key, err := tmpl.ConcurrencyKey(taskCtx)
	if err != nil {
		return nil, err
	}
	return &store.TaskConcurrency{Key: key, Limit: tmpl.Concurrency.Limit, Policy: tmpl.Concurrency.Policy}, nil
}

// admission is what admit decided for a task about to be started.
type admission struct {
	// stop: the task was not started (parked or cancelled); res says why.
	stop bool
	res  *HandleResult
}

// admit runs the admission of task taskID for actor before its start (see
// the comment at the top of this file); it is a no-op when no template
// declares a key. It publishes task.started for a task it started, and
// step.cancelled / task.cancelled for the tasks a policy cancelled.
func (e *Engine) admit(ctx context.Context, taskID int64, actor, reason string) (admission, error) {
	if !e.keysInUse() {
		return admission{}, nil
	}
	now := e.now()
	ar, err := e.store.TaskAdmit(context.WithoutCancel(ctx), &store.TaskAdmitParams{
		TaskID: taskID,
		Start:  startParams(taskID, actor, reason, now),
		Clock:  e.now,
		Park: store.QueueOp{Kind: store.QueueUpsert, Operation: OperationReenqueue, RunAt: now.Add(concurrencyRecheck),
			Reason: "waiting for a concurrency slot"},
		Cancel: &store.StepTransitionParams{From: statemachine.StepSources(statemachine.StepEventCancel),
			To: stepTarget(statemachine.StepEventCancel), Event: string(statemachine.StepEventCancel), Actor: actor, Now: now,
			Task: &store.TaskTransitionParams{From: statemachine.TaskSources(statemachine.TaskEventCancel),
				To: taskertype.TaskStateCancelled, Event: string(statemachine.TaskEventCancel), Actor: actor, Now: now,
				Queue: store.QueueOp{Kind: store.QueueDelete}}},
	})
	if err != nil {
		return admission{}, err
	}
	e.publishCancelled(ar, actor, now)
	res := &HandleResult{TaskID: taskID, Status: ar.State}
	switch ar.Outcome {
	case store.AdmitStarted, store.AdmitReplacedOldest:
		e.bus.Publish(taskertype.Event{Kind: taskertype.EventTaskStarted, TaskID: taskID, Time: now})
		return admission{}, nil
	case store.AdmitParked:
		next := now.Add(concurrencyRecheck)
		res.Outcome, res.Reason, res.NextRunAt = ActionWait, waitingReason(ar.Concurrency), &next
		return admission{stop: true, res: res}, nil
	case store.AdmitCancelledNewest:
		res.Outcome, res.Reason = ActionNone, ar.Reason
		return admission{stop: true, res: res}, nil
	}
	return admission{}, nil
}

// publishCancelled announces the tasks a policy cancelled.
func (e *Engine) publishCancelled(ar *store.AdmitResult, actor string, now time.Time) {
	for _, c := range ar.Cancelled {
		events := make([]taskertype.Event, 0, len(c.Steps)+1)
		for _, id := range c.Steps {
			events = append(events, taskertype.Event{Kind: taskertype.EventStepCancelled, TaskID: c.TaskID, StepID: id,
				Time: now, Data: map[string]any{"reason": ar.Reason, "actor": actor}})
		}
		events = append(events, taskertype.Event{Kind: taskertype.EventTaskCancelled, TaskID: c.TaskID, Time: now,
			Data: map[string]any{"reason": ar.Reason, "actor": actor, "steps_cancelled": len(c.Steps),
				"concurrency_key": ar.Concurrency.Key}})
		e.bus.Publish(events...)
	}
}

// waitingReason is explain's sentence for a task held back by its key.
func waitingReason(cs *store.ConcurrencyState) string {
	return fmt.Sprintf("waiting: concurrency key %s at limit %d", cs.Key, cs.Limit)
}

// heldWait bounds how long RunTask sleeps for a task parked by its key:
// the wake that makes its queue record due reaches runners, not RunTask.
func (e *Engine) heldWait(res *HandleResult, wait time.Duration) time.Duration {
	if res.Status == taskertype.TaskStatePending {
		return min(wait, e.cfg.PollInterval)
	}
	return wait
}

// explainConcurrency rewrites the reasons of the not-yet-started steps of
// a pending task whose key is at its limit: "waiting: concurrency key
// acct-42 at limit 1".
func (e *Engine) explainConcurrency(ctx context.Context, task *taskertype.Task, rs []*taskertype.StepReadiness) error {
	if task.State != taskertype.TaskStatePending {
		return nil
	}
	cs, err := e.store.TaskConcurrency(ctx, task.ID)
	if err != nil || cs == nil || cs.Running < cs.Limit {
		return err
	}
	why := fmt.Sprintf("%s (%d running; policy %s)", waitingReason(cs), cs.Running, cs.Policy)
	for _, r := range rs {
		if r.State == taskertype.StepStatePending || r.State == taskertype.StepStateWaitingForRetry {
			r.Reason, r.Ready = why, false // no runner can start the task now
		}
	}
	return nil
}

// notAdmitted is ClaimSteps' answer for a task admission did not start:
// not runnable, no steps, and why.
func (e *Engine) notAdmitted(ctx context.Context, taskID int64, adm admission, err error) (*ClaimResult, error) {
	if err != nil {
		return nil, fmt.Errorf("claim steps: %w", err)
	}
	task, err := e.store.TaskGet(ctx, taskID)
	if err != nil {
		return nil, fmt.Errorf("claim steps: %w", err)
	}
	return &ClaimResult{Task: externalTask(task), Steps: []ExternalStep{}, Reason: adm.res.Reason}, nil
}
