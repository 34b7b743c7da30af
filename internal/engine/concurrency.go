package engine

import (
	"context"
	"fmt"
	"slices"
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
// Admission is part of the coordinator's start-and-claim (Handle) and the
// pull API's (ClaimSteps), and only when some loaded template declares a
// key (keysInUse): without one nothing changes on the hot path. It is made
// in the claim batch's transaction (admitInBatch): the keys of the batch's
// pending tasks are locked and their running tasks counted in two
// statements for the whole batch, the engine decides, and the starts of the
// admitted tasks go with the batch's other starts and claims; a task at its
// limit is held back from the batch and admitted by a transaction of its
// own (TaskAdmit through admit), which applies the policy: park, cancel,
// or start when a slot freed meanwhile, and the claim is made again.
//
// On PostgreSQL the runner's queue claim comes first: it admits the
// pending tasks with a key it leased in one more statement
// (store.QueueClaimParams.Start, tasker_concurrency_start of migration
// 0024, the same locks and count), so most tasks with a key arrive here
// started (handleStarted) and only those at their limit go through
// Handle's admission and its policy.

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

// admit runs the admission of task taskID for actor in a transaction of
// its own (store.Store.TaskAdmit), for a task its claim batch held back at
// its key's limit (see the comment at the top of this file); it is a no-op
// when no template declares a key. It publishes task.started for a task it started, and
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
		e.announceQueue() // runners elsewhere learn the parked record's due time
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

// startAndClaim applies start and claims p in the next claim batch (see
// store.Store.TaskStartAndClaim), with the admission of a task with a
// concurrency key (see the comment at the top of this file). When the
// admission did not start the task (parked or cancelled by its policy),
// adm.stop is set and adm.res says why; nothing was claimed.
func (e *Engine) startAndClaim(ctx context.Context, start *store.TaskTransitionParams, p *store.StepClaimParams) (
	adm admission, tr *store.TransitionResult, task *taskertype.Task, claimed []*store.ClaimedStep, err error) {
	for {
		r := &claimReq{p: store.StartAndClaimParams{Start: start, Claim: p}, admit: e.keysInUse(),
			admitSlots: e.cfg.Templates.HasHandlerLimits()}
		if err := e.claims.do(ctx, r); err != nil {
			return admission{}, nil, nil, nil, err
		}
		e.slots.remember(r.slots)
		if !r.held {
			return admission{}, r.res.Transition, r.res.Task, r.res.Claimed, nil
		}
		// At its key's limit in the batch: the policy decides, in a
		// transaction of its own. A task it started (a slot freed
		// meanwhile) or found no longer pending is claimed from by the next
		// batch without admission (only pending tasks are admitted).
		if adm, err := e.admit(ctx, start.TaskID, start.Actor, start.Reason); err != nil || adm.stop {
			return adm, nil, nil, nil, err
		}
	}
}

// admitInBatch is the admission of the tasks of a claim batch (execClaims)
// that have a concurrency key, inside its transaction: the store locks
// the keys of the pending ones and lists the keys' running tasks
// (store.Tx.ConcurrencyLockMany); a task is admitted while its key has
// fewer than its limit running, counting the tasks admitted before it in
// the batch, and the requests of the others are marked held (they start
// nothing and claim nothing). starts[i] is request i's start, stamped
// after the locks, for an admitted task with a key (nil otherwise, and
// starts is nil when the batch has none).
func (e *Engine) admitInBatch(ctx context.Context, tx store.Tx, batch []*claimReq) ([]*store.TaskTransitionParams, error) {
	var ids []int64
	for _, r := range batch {
		if r.admit && r.p.Start != nil {
			ids = append(ids, r.p.Start.TaskID)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	slices.Sort(ids)
	locked, err := tx.ConcurrencyLockMany(ctx, slices.Compact(ids))
	if err != nil {
		return nil, err
	}
	if len(locked.Tasks) == 0 {
		return nil, nil
	}
	now := e.now() // after the locks: never before the finish that freed a slot
	taken := make(map[string]int, len(locked.Running))
	for key, running := range locked.Running {
		taken[key] = len(running)
	}
	admitted := make(map[int64]bool, len(locked.Tasks))
	starts := make([]*store.TaskTransitionParams, len(batch))
	for i, r := range batch {
		if !r.admit || r.p.Start == nil {
			continue
		}
		id := r.p.Start.TaskID
		c := locked.Tasks[id]
		if c == nil {
			continue // no key, or not pending: nothing to admit
		}
		ok, decided := admitted[id]
		if !decided {
			switch {
			case slices.Contains(locked.Running[c.Key], id):
				ok = true // started meanwhile by another runner: its start is a no-op
			case taken[c.Key] < c.Limit:
				ok = true
				taken[c.Key]++
			}
			admitted[id] = ok
		}
		if !ok {
			r.held = true
			continue
		}
		st := *r.p.Start
		st.Now = now
		starts[i] = &st
	}
	return starts, nil
}
