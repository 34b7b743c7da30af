package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/tasker-systems/tasker/internal/statemachine"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/taskertype"
)

// RunTask drives one task to a state where no further Handle is due in this
// process: it handles the task, sleeps through backoff delays and handles it
// again. It returns the last HandleResult. When another coordinator holds
// the task's running steps it waits for them (polling), so that `tasker run`
// always reports a final state.
func (e *Engine) RunTask(ctx context.Context, taskID int64) (*HandleResult, error) {
	for {
		res, err := e.Handle(ctx, taskID)
		if err != nil {
			return res, err
		}
		var wait time.Duration
		switch res.Outcome {
		case ActionWait:
			wait = e.heldWait(res, e.until(*res.NextRunAt))
		case ActionElsewhere:
			wait = e.cfg.PollInterval
		case ActionYield:
			return res, ctx.Err()
		default:
			return res, nil
		}
		if wait > 0 && !e.sleep(ctx, wait) {
			return res, ctx.Err()
		}
	}
}

// Run is the runner: it claims due enqueue records with a lease and handles
// their tasks with up to workers coordinators at once, until ctx ends. It
// wakes on store notifications (PostgreSQL LISTEN/NOTIFY), on local enqueues
// and on a timer for the next due record, and polls every PollInterval as
// the floor. It also rescues steps whose lease expired. On ctx end it stops
// claiming and waits for its coordinators, which finish or release their
// steps within ShutdownGrace. workers must be at least 1.
func (e *Engine) Run(ctx context.Context, workers int) error {
	if workers <= 0 {
		return fmt.Errorf("run: workers must be at least 1 (got %d)", workers)
	}
	e.runners.Add(1)
	defer e.runners.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-e.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	defer e.runSchedules(ctx)()
	defer e.runPruner(ctx)()
	var notify <-chan struct{}
	if n, ok := e.store.(store.Notifier); ok {
		ch, err := n.Listen(ctx)
		if err != nil {
			e.log.Warn("listen for notifications; polling only", "err", err)
		} else {
			notify = ch
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, workers)
	held := &heldEntries{ids: map[int64]int{}}
	stopHeartbeat := e.heartbeatQueue(ctx, held)
	defer stopHeartbeat()
	rescueTick := e.cfg.Clock.NewTicker(e.cfg.RescueInterval)
	defer rescueTick.Stop()
	e.rescue(ctx)
	errWait := time.Duration(0) // grows while the database keeps failing
	var lastShort time.Time     // the last claim that returned work, but less than it asked for (system time)
	for ctx.Err() == nil {
		free := workers - len(sem)
		claimed := 0
		if free > 0 {
			if !e.claimCooldown(ctx, lastShort, notify) {
				break
			}
			now := e.now()
			// The claim also starts the tasks it can (on PostgreSQL, where
			// the record is in the task's row: one write of it instead of
			// two), admitting those with a concurrency key in one more
			// statement; Handle's start then finds them started.
			entries, err := e.store.QueueClaim(ctx, &store.QueueClaimParams{Owner: e.cfg.Owner, Limit: free, Now: now,
				LeaseUntil: now.Add(e.cfg.QueueLease), Start: true, StartReason: coordinatorStarted, DatabaseClock: e.systemClock()})
			if err != nil && len(entries) > 0 {
				// The claim committed but the admission of its tasks with
				// a concurrency key failed: their coordinators admit them.
				e.log.Warn("claim queue: admission in the claim", "err", err)
			} else if err != nil && ctx.Err() == nil {
				errWait = min(max(2*errWait, e.cfg.PollInterval), maxErrorWait)
				e.log.Warn("claim queue; retrying", "err", err, "retry_in", errWait)
				if !e.sleep(ctx, errWait) {
					break
				}
				continue
			}
			errWait = 0
			claimed = len(entries)
			switch {
			case claimed == free:
				// Every worker asked for got a task: more may be due (a
				// backlog), so the next free worker claims at once.
				lastShort = time.Time{}
			case claimed > 0:
				lastShort = time.Now() // the queue ran dry: let new tasks gather
			}
			for _, entry := range entries {
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem; e.nudge() }()
					held.add(entry.TaskID)
					defer held.remove(entry.TaskID)
					e.work(ctx, entry)
				}()
			}
		}
		if claimed > 0 && claimed == free {
			continue // more may be due right away
		}
		if free == 0 {
			// Every worker is busy: nothing can be claimed until one is
			// free (it nudges e.wake), so no due time is worth asking for.
			select {
			case <-ctx.Done():
			case <-e.wake:
			case <-rescueTick.C():
				e.rescue(ctx)
			}
			continue
		}
		wait := e.cfg.PollInterval
		if notify != nil {
			// Notifications wake us for new work; the poll is only a floor.
			wait = max(wait, notifiedPollFloor)
		}
		if next, err := e.store.QueueNextRunAt(ctx, e.now()); err == nil && next != nil {
			wait = min(wait, max(e.until(*next), time.Millisecond))
		}
		timer := e.cfg.Clock.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-e.wake:
		case <-notify:
		case <-rescueTick.C():
			e.rescue(ctx)
		case <-timer.C():
		}
		timer.Stop()
	}
	wg.Wait()
	return nil
}

// claimCooldown waits, before a claim, until ClaimCooldown has passed since
// the last claim that found work but less than it asked for (lastShort:
// the queue ran dry, and new tasks arrive as they are created), and then
// takes the wake-ups
// that arrived meanwhile off their channels: the claim about to run sees
// every enqueue committed before it, so they are answered. It returns
// false when ctx ended.
//
// This is what keeps a task cheap while the queue is being refilled: a
// runner that claimed on every wake-up would claim the tasks one or two at
// a time as they are created, and each small group of coordinators would
// write its claims, results and finalizations in statements and commits of
// its own. Claiming at most once per cooldown (10 ms by default) lets the
// tasks created meanwhile gather, so they are claimed, run and finalized
// together, as in a burn-down. A runner that has found nothing for a
// cooldown claims at once, so an idle runner's latency is unchanged, and
// a runner working off a backlog (its claims come back full) claims as
// soon as a worker is free: there is nothing to wait for. The wait is on
// the system clock: it is a matter of throughput, not of the engine's
// time.
func (e *Engine) claimCooldown(ctx context.Context, lastShort time.Time, notify <-chan struct{}) bool {
	if e.cfg.ClaimCooldown <= 0 || lastShort.IsZero() {
		return true
	}
	if d := e.cfg.ClaimCooldown - time.Since(lastShort); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
	select {
	case <-e.wake:
	default:
	}
	if notify != nil {
		select {
		case <-notify:
		default:
		}
	}
	return true
}

// notifiedPollFloor is the idle poll interval of a runner that receives
// PostgreSQL notifications: new and re-enqueued work wakes it at once, due
// retries wake it by timer, and a reconnect of the LISTEN connection wakes
// it once, so polling only guards against the unforeseen. It keeps an idle
// runner under one query per second.
const notifiedPollFloor = 5 * time.Second

// maxErrorWait caps the runner's backoff while the database is failing.
const maxErrorWait = 5 * time.Second

// heldEntries are the enqueue records a runner's coordinators are working
// on (a count per task: the same task's record can be claimed again while
// an earlier coordinator of it is finishing).
type heldEntries struct {
	mu  sync.Mutex
	ids map[int64]int
}

func (h *heldEntries) add(id int64) {
	h.mu.Lock()
	h.ids[id]++
	h.mu.Unlock()
}

func (h *heldEntries) remove(id int64) {
	h.mu.Lock()
	if h.ids[id]--; h.ids[id] <= 0 {
		delete(h.ids, id)
	}
	h.mu.Unlock()
}

func (h *heldEntries) list() []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]int64, 0, len(h.ids))
	for id := range h.ids {
		out = append(out, id)
	}
	return out
}

// heartbeatQueue extends the leases of the held records every
// QueueLease/3, all in one statement, until the returned function is
// called (it waits for the heartbeat goroutine). A record acked or deleted
// meanwhile is left alone: the extension only touches records this owner
// still holds.
func (e *Engine) heartbeatQueue(ctx context.Context, held *heldEntries) func() {
	dbctx := context.WithoutCancel(ctx)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := e.cfg.Clock.NewTicker(max(e.cfg.QueueLease/3, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C():
				ids := held.list()
				if len(ids) == 0 {
					continue
				}
				if _, err := e.store.QueueExtend(dbctx, e.cfg.Owner, ids, e.now().Add(e.cfg.QueueLease)); err != nil {
					e.log.Warn("extend queue leases", "tasks", len(ids), "err", err)
				}
			}
		}
	}()
	return func() { close(stop); <-done }
}

// work handles one claimed enqueue record; the runner's heartbeat keeps its
// lease alive meanwhile.
func (e *Engine) work(ctx context.Context, entry *store.QueueEntry) {
	dbctx := context.WithoutCancel(ctx)
	var res *HandleResult
	var err error
	if entry.Started != nil {
		res, err = e.handleStarted(ctx, entry.Started)
	} else {
		res, err = e.Handle(ctx, entry.TaskID)
	}
	if err != nil {
		e.log.Error("handle task", "task_id", entry.TaskID, "err", err)
		delay := e.backoff.Delay(entry.Attempts, entry.Priority, 0)
		if rerr := e.store.QueueRelease(dbctx, entry.TaskID, e.cfg.Owner, e.now().Add(delay)); rerr != nil {
			e.log.Error("release queue entry", "task_id", entry.TaskID, "err", rerr)
		}
		return
	}
	// A finalizer transition removed (complete, failed, blocked) or replaced
	// (retry_viable) the record in its own transaction. Otherwise (the task
	// was not runnable, runs elsewhere, or yielded) drop our claim on it.
	switch res.Outcome {
	case ActionComplete, ActionFail, ActionBlock, ActionWait:
		return
	}
	if err := e.store.QueueAck(dbctx, entry.TaskID, e.cfg.Owner); err != nil {
		e.log.Error("ack queue entry", "task_id", entry.TaskID, "outcome", res.Outcome, "err", err)
	}
}

// rescue returns steps whose lease expired (their coordinator died) to the
// pool: the lost attempt counts as a retryable failure (or ends the step when
// it was the last), and the task is re-enqueued. It also expires tasks past
// their deadline (see RescueExpired).
func (e *Engine) rescue(ctx context.Context) {
	if _, err := e.RescueExpired(ctx); err != nil && ctx.Err() == nil {
		e.log.Warn("rescue expired step leases", "err", err)
	}
}

func (e *Engine) rescueStep(ctx context.Context, st *taskertype.Step, now time.Time) error {
	reason := fmt.Sprintf("lease of %s expired at %s: attempt %d presumed lost", st.LeaseOwner,
		st.LeaseExpiresAt.UTC().Format(time.RFC3339), st.Attempts)
	doc, _ := json.Marshal(errorDoc{Message: reason, Kind: "lease_expired", Attempt: st.Attempts})
	task, err := e.store.TaskGet(ctx, st.TaskID)
	if err != nil {
		return err
	}
	ev := statemachine.StepEventFailRetryable
	var next *time.Time
	var delay time.Duration
	why := retryDecision(st.Attempts, st.MaxAttempts, st.Retryable, false)
	if why != retryAllowed {
		ev = statemachine.StepEventFailPermanent
	} else {
		delay = e.backoff.Delay(st.Attempts, task.Priority, 0)
		t := now.Add(delay)
		next = &t
	}
	res, err := e.store.StepTransition(ctx, &store.StepTransitionParams{
		TaskID: st.TaskID, StepIDs: []int64{st.ID}, From: []taskertype.StepState{taskertype.StepStateInProgress},
		To: stepTarget(ev), Event: string(ev), Reason: reason, Actor: e.cfg.Owner, Now: now, Error: doc,
		NextRetryAt: next, RequireLeaseExpiredBefore: &time.Time{}, // by the database's clock
		Queue: store.QueueOp{Kind: store.QueueUpsert, Operation: OperationReenqueue, RunAt: now, Priority: task.Priority, Reason: reason},
	})
	if err != nil || len(res.Moved) == 0 {
		return err
	}
	e.log.Info("rescued step with expired lease", "task_id", st.TaskID, "step", st.Name, "attempt", st.Attempts)
	failed := taskertype.Event{Kind: taskertype.EventStepFailed, TaskID: st.TaskID, StepID: st.ID, StepName: st.Name,
		Time: now, Data: map[string]any{"attempt": st.Attempts, "error": reason, "kind": "lease_expired", "handler_class": st.HandlerClass,
			"permanent": ev == statemachine.StepEventFailPermanent}}
	if next == nil {
		failed.Data["reason"] = string(why)
		if why == noRetryExhausted {
			failed.Data["reason"] = "lease expired on the last allowed attempt"
		}
		e.bus.Publish(failed)
	} else {
		e.bus.Publish(failed, taskertype.Event{Kind: taskertype.EventStepRetryScheduled, TaskID: st.TaskID, StepID: st.ID,
			StepName: st.Name, Time: now, Data: map[string]any{"attempt": st.Attempts, "next_retry_at": *next,
				"delay_seconds": delay.Seconds(), "handler_class": st.HandlerClass}})
	}
	e.enqueued(ctx, EnqueueRequest{TaskID: st.TaskID, Operation: OperationReenqueue, Priority: task.Priority, Reason: reason, Time: now})
	return nil
}

// lateSuccessTaken reports whether a success of attempt is still taken for
// st although st is no longer in progress: the rescuer failed that very
// attempt (its lease expired while the runner was alive but could not
// extend it) and no later attempt has been claimed since. The store applies
// the same rule (see store.StepOutcome.Attempt).
func lateSuccessTaken(st *taskertype.Step, attempt int) bool {
	if st.State != taskertype.StepStateWaitingForRetry || attempt <= 0 || st.Attempts != attempt {
		return false
	}
	var doc errorDoc
	return json.Unmarshal(st.Error, &doc) == nil && doc.Kind == "lease_expired"
}

// Explain returns viable-step discovery's view of every step of a task, with
// a sentence saying why each is or is not running.
func (e *Engine) Explain(ctx context.Context, taskID int64) ([]*taskertype.StepReadiness, error) {
	task, err := e.store.TaskGet(ctx, taskID)
	if err != nil {
		return nil, err
	}
	now := e.now()
	rs, err := e.store.StepReadiness(ctx, taskID, now)
	if err != nil {
		return nil, err
	}
	defer func() { _ = e.explainConcurrency(ctx, task, rs) }() // after the reasons below
	delayed := task.State == taskertype.TaskStatePending && task.RunAt != nil && task.RunAt.After(now)
	for _, r := range rs {
		r.Reason = explain(task, r, now)
		if delayed {
			r.Ready = false // no runner starts the task before its run_at
		}
		if cond := e.stepCondition(task, r.Name); cond != nil {
			switch r.State {
			case taskertype.StepStateSkipped:
				r.Reason = "skipped: " + skipReason(cond)
			case taskertype.StepStatePending, taskertype.StepStateWaitingForRetry:
				r.Reason += fmt.Sprintf("; runs only if %s", cond)
			}
		}
	}
	e.explainFanOuts(task, rs)
	if err := e.explainRateLimits(ctx, task, rs); err != nil {
		return nil, err
	}
	if err := e.explainHandlerLimits(ctx, task, rs); err != nil {
		return nil, err
	}
	return rs, nil
}

func explain(task *taskertype.Task, r *taskertype.StepReadiness, now time.Time) string {
	switch r.State {
	case taskertype.StepStateComplete:
		return "complete"
	case taskertype.StepStateResolvedManually:
		return "resolved manually"
	case taskertype.StepStateCancelled:
		return "cancelled"
	case taskertype.StepStateSkipped:
		return "skipped: its when condition was false"
	case taskertype.StepStateError:
		return fmt.Sprintf("failed after %d of %d attempts; retry it to run again", r.Attempts, r.MaxAttempts)
	case taskertype.StepStateInProgress:
		if r.LeaseExpiresAt != nil && r.LeaseExpiresAt.Before(now) {
			return fmt.Sprintf("attempt %d held by %s whose lease expired at %s; the rescuer will retry it",
				r.Attempts, r.LeaseOwner, r.LeaseExpiresAt.Format(time.RFC3339))
		}
		return fmt.Sprintf("attempt %d running under %s", r.Attempts, r.LeaseOwner)
	}
	if task.State.Terminal() || task.State == taskertype.TaskStateBlocked {
		return fmt.Sprintf("task is %s", task.State)
	}
	if task.State == taskertype.TaskStatePending && task.RunAt != nil && task.RunAt.After(now) {
		return fmt.Sprintf("task is delayed until %s (%s from now)", task.RunAt.Format(time.RFC3339),
			task.RunAt.Sub(now).Round(time.Second))
	}
	switch {
	case !r.DependenciesSatisfied:
		return fmt.Sprintf("waiting for %d of %d parent(s): %v", r.TotalParents-r.CompletedParents, r.TotalParents, r.BlockingParents)
	case !r.RetryEligible:
		return fmt.Sprintf("no attempts left (%d of %d, retryable=%t)", r.Attempts, r.MaxAttempts, r.Retryable)
	case !r.BackoffExpired:
		return fmt.Sprintf("waiting for backoff until %s (%s from now)", r.NextRetryAt.Format(time.RFC3339),
			r.NextRetryAt.Sub(now).Round(time.Second))
	case r.Ready:
		return "ready: will run when a coordinator handles the task"
	}
	return "not ready"
}
