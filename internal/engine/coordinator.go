package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/tasker-systems/tasker/internal/statemachine"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/taskertype"
)

// HandleResult is the orchestration result of one Handle call.
type HandleResult struct {
	TaskID int64 `json:"task_id"`
	// Status is the task's state when Handle returned.
	Status taskertype.TaskState `json:"status"`
	// Outcome is the finalizer's decision (see Decision).
	Outcome Action `json:"outcome"`
	// Reason explains the outcome.
	Reason string `json:"reason,omitempty"`
	// StepsExecuted counts the attempts this call ran.
	StepsExecuted int `json:"steps_executed"`
	// NextRunAt is when the task should be handled again (waiting for retry).
	NextRunAt *time.Time `json:"next_run_at,omitempty"`
}

// Finalized reports whether no further Handle is due from this caller (the
// task ended, is blocked, or another coordinator owns its running steps).
// It is false for retry_viable, yielded and continue (viable steps remain).
func (r *HandleResult) Finalized() bool {
	return r.Outcome != ActionWait && r.Outcome != ActionYield && r.Outcome != ActionContinue
}

type attemptResult struct {
	claimed  *store.ClaimedStep
	results  json.RawMessage
	err      error
	panicked bool
	timedOut bool
	started  time.Time
	duration time.Duration
}

// Handle is the WorkflowCoordinator: it runs the task's viable steps,
// max_parallel_steps at a time, recording results in batches as they
// arrive, until nothing more can run; then the TaskFinalizer decides. When
// ctx ends, no new step is claimed, in-flight steps get ShutdownGrace to
// finish, the rest are cancelled and released (no attempt counted) and the
// task is handed back to the queue.
func (e *Engine) Handle(ctx context.Context, taskID int64) (*HandleResult, error) {
	// The start transition, the read of the task and the first claim (up
	// to the task's max_parallel_steps) share one transaction. A task
	// outside the start's sources (terminal, blocked, failed) stays as it
	// is: nothing runs until an operator acts. Like every write of the
	// coordinator it is not cut off by ctx: a start and claim committed
	// unseen would leave the claimed steps to expire as lost attempts.
	// The claim's time and lease come from the database's clock when the
	// claim runs (StepClaimParams.Lease), not from now, which may be well
	// before (a batch, a wait for a connection, a database restart).
	now := e.now()
	tr, task, first, err := e.store.TaskStartAndClaim(context.WithoutCancel(ctx),
		startParams(taskID, e.cfg.Owner, "coordinator started", now),
		&store.StepClaimParams{TaskID: taskID, Owner: e.cfg.Owner, Lease: e.cfg.StepLease, FirstNames: e.rootNames})
	if err != nil {
		return nil, err
	}
	res := &HandleResult{TaskID: taskID, Status: task.State}
	if tr.Changed {
		e.bus.Publish(taskertype.Event{Kind: taskertype.EventTaskStarted, TaskID: taskID, Time: now})
	} else if tr.State != taskertype.TaskStateInProgress {
		return untouched(res, tr.State), nil
	}
	if first == nil {
		first = []*store.ClaimedStep{} // claimed nothing: the loop need not ask again at once
	}

	executed, stopped, settled, err := e.runSteps(ctx, task, first, res)
	res.StepsExecuted = executed
	if err != nil {
		return res, err
	}
	if stopped {
		return e.yield(task, res, "coordinator shutting down")
	}
	if settled {
		return res, nil
	}
	return e.finalize(ctx, task, res)
}

// rootNames names the steps of task's template without parents, the only
// steps of a task that has not run that can be ready; nil when the
// template is not loaded here, when every step is a root (the claim would
// look at every step anyway) or when there are more than maxNarrowNames.
func (e *Engine) rootNames(task *taskertype.Task) []string {
	tmpl, err := e.cfg.Templates.Lookup(task.Namespace, task.Name, task.Version)
	if err != nil {
		return nil
	}
	var roots []string
	for _, st := range tmpl.Steps {
		if len(st.DependsOn) == 0 {
			if len(roots) == maxNarrowNames {
				return nil
			}
			roots = append(roots, st.Name)
		}
	}
	if len(roots) == len(tmpl.Steps) {
		return nil
	}
	return roots
}

// startParams is the task transition that starts (or resumes) a task.
func startParams(taskID int64, actor, reason string, now time.Time) *store.TaskTransitionParams {
	return &store.TaskTransitionParams{TaskID: taskID, From: statemachine.TaskSources(statemachine.TaskEventStart),
		To: taskertype.TaskStateInProgress, Event: string(statemachine.TaskEventStart), Reason: reason, Actor: actor, Now: now}
}

// handlerGiveUp is how long a shutting-down coordinator waits for handlers
// after cancelling them before it abandons their steps to lease expiry.
const handlerGiveUp = time.Second

// maxNarrowNames bounds the names a claim after a short claim filters by.
// The filter is a linear search of the list for every pending step the
// claim reads: when a root unlocked the 10,000 leaves of a fan-out, the
// claim by their names took ~50 ms longer than the general claim, which
// finds 2,000 ready leaves in its first 2,000 rows anyway.
const maxNarrowNames = 64

// runSteps is the discover -> claim -> execute -> record loop. first, when
// not nil, are steps the caller already claimed (the loop's first claim). stopped is true when ctx ended before the task ran out of
// viable steps.
//
// When the last results of the loop are recorded (nothing left in flight,
// nothing more expected to be claimable) the TaskFinalizer's decision is
// applied in the same transaction and reported on res; settled is then true
// (a "continue" decision does not settle: the loop claims again).
//
// Claims and recordings run off the loop, one of each at a time, so that a
// wide task keeps two connections busy and the loop goes on collecting
// results: a batch of successes that is not the last is recorded in the
// background while a claim fills the slots those attempts freed.
// max_parallel_steps bounds the handlers running; steps whose results are
// still being recorded do not hold a slot. Steps their results unlock are
// claimed once the recording has committed. Batches with a failure, the
// last batch and batches during shutdown are recorded in the loop.
//
// Every claimed step is held by the engine's lease keeper (stepLeases) from
// its claim until the recording of its result has committed or the loop
// gives it up, whatever the loop is doing meanwhile.
func (e *Engine) runSteps(ctx context.Context, task *taskertype.Task, first []*store.ClaimedStep,
	res *HandleResult) (executed int, stopped, settled bool, err error) {
	// Handlers run under their own context so that a shutdown can let them
	// finish (ShutdownGrace) before cancelling them.
	hctx, cancelHandlers := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHandlers()
	dbctx := context.WithoutCancel(ctx)

	results := make(chan attemptResult, max(task.MaxParallelSteps, len(first), 1))
	inflight := map[int64]*store.ClaimedStep{}
	failed := false
	var grace, giveUp <-chan time.Time
	shutting := false
	done := ctx.Done()

	preclaimed := first != nil
	// drained: the last claim took fewer steps than it could and no result
	// recorded since can have made another step ready (no child of a step
	// completed since has seen all its parents complete), so claiming again
	// would find nothing. Only an optimization: the finalizer re-checks
	// readiness before it decides (and a child whose other parents completed
	// elsewhere is claimed after the finalizer's "continue"). It spares a
	// wide fan-in a claim per recorded batch, each re-checking the join
	// step's thousands of parents.
	drained := false
	var unlocks *unlockTracker
	unlocksLoaded := false

	var pending []attemptResult  // results not yet handed to a recording
	var pendingUnlocks unlockSet // the children results in pending unlock
	var recorded chan backgroundRecord
	// Whatever is still held when the loop returns (handlers that ignored
	// cancellation, a recording that failed for good) is left to expire.
	defer func() {
		for id := range inflight {
			e.leases.release(id)
		}
		for _, r := range pending {
			e.leases.release(r.claimed.Step.ID)
		}
	}()

	// Claims run off the loop too, one at a time, with the slots free when
	// they start; the loop goes on taking results meanwhile.
	var claiming chan backgroundClaim
	claimLimit := 0
	reclaim := false // a recording unlocked steps while the claim ran
	// lastShort: the last claim took fewer steps than it could, so every
	// step then claimable was claimed; the next claim need only look at
	// the steps unlocked since (narrow, by name) instead of checking the
	// readiness of every pending step of the task (a long chain's claims
	// were quadratic in its length). A long list of names is not worth it
	// (see maxNarrowNames).
	lastShort := false
	var narrow unlockSet // unlocked by recordings committed since the last claim started
	claimFailed := false // the last claim failed: wait for a result first
	start := func(claimed []*store.ClaimedStep) {
		events := make([]taskertype.Event, 0, len(claimed))
		for _, c := range claimed {
			inflight[c.Step.ID] = c
			e.leases.hold(claimedAt(c), c.Step.ID)
			executed++
			events = append(events, taskertype.Event{Kind: taskertype.EventStepStarted, TaskID: task.ID,
				StepID: c.Step.ID, StepName: c.Step.Name, Time: claimedAt(c),
				Data: map[string]any{"attempt": c.Step.Attempts, "handler_class": c.Step.HandlerClass}})
			go e.execute(hctx, task, c, results)
		}
		e.bus.Publish(events...)
	}
	unlocked := func(u unlockSet) {
		drained = false
		if claiming != nil {
			reclaim = true // the claim in flight may have run before they were committed
		}
		narrow.add(u)
	}
	for {
		if preclaimed {
			start(first)
			preclaimed = false
			drained = len(first) < task.MaxParallelSteps
			lastShort = drained
		} else if claiming == nil && !drained && !claimFailed && !shutting && !failed && ctx.Err() == nil {
			if room := task.MaxParallelSteps - len(inflight); room > 0 {
				claimLimit, reclaim = room, false
				var names []string
				if lastShort && !narrow.unknown && len(narrow.names) > 0 && len(narrow.names) <= maxNarrowNames {
					names = narrow.names
				}
				narrow = unlockSet{} // this claim sees every unlock committed before it
				ch := make(chan backgroundClaim, 1)
				claiming = ch
				split := len(inflight) == 0 && recorded == nil // nothing else of this task keeps the database busy
				go func() {
					// The claim's time is the database's when it runs: a
					// time taken here could precede results recorded while
					// the claim waited, and would shorten its lease.
					claimed, err := e.claimInBackground(dbctx, &store.StepClaimParams{TaskID: task.ID, Owner: e.cfg.Owner,
						Limit: room, Lease: e.cfg.StepLease, Names: names}, split)
					ch <- backgroundClaim{claimed: claimed, err: err}
				}()
			}
		}
		if len(inflight) == 0 && recorded == nil && len(pending) == 0 && claiming == nil {
			return executed, shutting || ctx.Err() != nil, false, nil
		}

		// The batch in pending is the last (see below) when nothing runs and
		// nothing more is expected to be claimable.
		lastPending := len(inflight) == 0 && claiming == nil && ((drained && !pendingUnlocks.any()) || failed)
		if recorded == nil && len(pending) > 0 && !shutting && ctx.Err() == nil && !batchFailed(pending) && !lastPending {
			// Not the last batch: record it in the background.
			batch, unlocked := pending, pendingUnlocks
			pending, pendingUnlocks = nil, unlockSet{}
			recorded = make(chan backgroundRecord, 1)
			split := claiming == nil // nothing else of this task keeps the database busy
			go func() {
				err := e.recordInBackground(dbctx, task, batch, split)
				for _, r := range batch {
					e.leases.release(r.claimed.Step.ID) // recorded, or given up to the rescuer
				}
				recorded <- backgroundRecord{unlocked: unlocked, err: err}
			}()
			continue // claim for the freed slots meanwhile
		}

		var batch []attemptResult
		if recorded == nil && len(pending) > 0 {
			batch, pending = pending, nil // recorded in the loop, below
		} else {
			select {
			case r := <-results:
				batch = append(batch, r)
			case c := <-claiming:
				claiming = nil
				if c.err != nil && len(c.claimed) > 0 {
					start(c.claimed) // one half of a split claim failed: run what the other took
				}
				if c.err != nil {
					if len(inflight) == 0 && recorded == nil && len(pending) == 0 {
						return executed, false, false, c.err
					}
					// Finish and record the running attempts (recording
					// retries through the fault); claim again after a result.
					e.log.Warn("claim steps; recording the running ones first", "task_id", task.ID, "err", c.err)
					claimFailed, lastShort = true, false
					continue
				}
				lastShort = len(c.claimed) < claimLimit
				drained = lastShort && !reclaim
				start(c.claimed)
				continue
			case b := <-recorded:
				recorded = nil
				claimFailed = false
				if b.err != nil {
					e.abandon(dbctx, task.ID, inflight, results, cancelHandlers)
					return executed, false, false, b.err
				}
				if b.unlocked.any() {
					unlocked(b.unlocked) // the unlocked steps are committed: claim them
				}
				continue
			case <-done:
				done, shutting = nil, true
				grace = time.After(e.cfg.ShutdownGrace)
				continue
			case <-grace:
				cancelHandlers() // handlers see ctx cancelled; their results are released below
				grace = nil
				giveUp = time.After(handlerGiveUp)
				continue
			case <-giveUp:
				// Handlers that ignore cancellation cannot be stopped. Stop
				// extending their leases and leave: the leases expire and the
				// rescuer counts those attempts as failed, as after a crash.
				e.log.Warn("handlers ignored cancellation; leaving their step leases to expire",
					"task_id", task.ID, "steps", len(inflight))
				return executed, true, false, nil
			}
		drain:
			for {
				select {
				case r := <-results:
					batch = append(batch, r)
				default:
					break drain
				}
			}
			for _, r := range batch {
				delete(inflight, r.claimed.Step.ID)
			}
			claimFailed = false
			if !unlocksLoaded {
				unlocks, unlocksLoaded = e.newUnlockTracker(task), true
			}
			for _, r := range batch {
				if r.err == nil {
					pendingUnlocks.add(unlocks.completed(r.claimed.Step.Name))
				}
			}
			pending = append(pending, batch...)
			continue // record in the background, or below once nothing else runs
		}
		if pendingUnlocks.any() {
			unlocked(pendingUnlocks) // recorded in the loop: the unlocked steps are claimable after it
		}
		pendingUnlocks = unlockSet{}
		// The last batch: nothing in flight and no claim expected (the last
		// claim came back short and nothing recorded now unlocks a step, or
		// a step failed). Finalize in the recording transaction.
		last := len(inflight) == 0 && claiming == nil && !shutting && ctx.Err() == nil &&
			(drained || failed || batchFailed(batch))
		var anyFailed bool
		var final *finalDecision
		err := e.retryDB(dbctx, "record step results", e.cfg.StepLease, func() (err error) {
			anyFailed, final, err = e.record(dbctx, task, batch, shutting && grace == nil, last)
			return err
		})
		for _, r := range batch {
			e.leases.release(r.claimed.Step.ID) // recorded, or given up to the rescuer
		}
		if err != nil {
			e.abandon(dbctx, task.ID, inflight, results, cancelHandlers)
			return executed, false, false, err
		}
		failed = failed || anyFailed
		if final != nil {
			e.settle(dbctx, task, res, final.v, final.tr)
			if res.Outcome != ActionContinue {
				return executed, false, true, nil
			}
			drained, failed, lastShort = false, false, false // steps are ready after all: claim them
		}
	}
}

// splitMin is the smallest half of a background claim or recording made
// as a transaction of its own (see claimInBackground).
const splitMin = 256

// recordInBackground records a batch that is neither the last nor holds a
// failure, retrying through database faults. With split, a batch of at
// least 2 x splitMin results is recorded as two transactions at once (see
// claimInBackground).
func (e *Engine) recordInBackground(ctx context.Context, task *taskertype.Task, batch []attemptResult, split bool) error {
	rec := func(part []attemptResult) error {
		return e.retryDB(ctx, "record step results", e.cfg.StepLease, func() error {
			_, _, err := e.record(ctx, task, part, false, false)
			return err
		})
	}
	if !split || len(batch) < 2*splitMin {
		return rec(batch)
	}
	half := len(batch) / 2
	var wg sync.WaitGroup
	var first error
	wg.Go(func() { first = rec(batch[:half]) })
	second := rec(batch[half:])
	wg.Wait()
	return errors.Join(first, second)
}

// claimInBackground claims for the loop. With split (nothing else of the
// task is running or being recorded), a general claim of at least
// 2 x splitMin steps is made as two claims of half the limit at once, in
// two transactions: one transaction's statements run on one server
// process, so claiming a fan-out's 1,000 leaves, and then recording them,
// kept one core busy while nothing else could run. The second claim skips
// the rows the first has locked (SKIP LOCKED), so they never take the same
// step, and together they take what one claim would have. When the task
// keeps the database busy otherwise (a wide fan-out's steady state), a
// split only added contention (fan-out 10,000: -7 %), so it is not made.
func (e *Engine) claimInBackground(ctx context.Context, p *store.StepClaimParams, split bool) ([]*store.ClaimedStep, error) {
	if !split || len(p.Names) > 0 || p.Limit < 2*splitMin {
		return e.store.StepClaim(ctx, p)
	}
	a, b := *p, *p
	a.Limit = p.Limit / 2
	b.Limit = p.Limit - a.Limit
	var wg sync.WaitGroup
	var first []*store.ClaimedStep
	var firstErr error
	wg.Go(func() { first, firstErr = e.store.StepClaim(ctx, &a) })
	second, err := e.store.StepClaim(ctx, &b)
	wg.Wait()
	// On an error the steps the other half claimed are still returned: they
	// are leased to this coordinator and must run.
	return append(first, second...), errors.Join(firstErr, err)
}

// backgroundClaim is the outcome of a claim run off the loop.
type backgroundClaim struct {
	claimed []*store.ClaimedStep
	err     error
}

// claimedAt is when the database granted a claimed step (its
// last_attempted_at, stamped by the claim).
func claimedAt(c *store.ClaimedStep) time.Time {
	if c.Step.LastAttemptedAt != nil {
		return *c.Step.LastAttemptedAt
	}
	return time.Now().UTC()
}

// backgroundRecord is the outcome of a recording run off the loop.
type backgroundRecord struct {
	unlocked unlockSet // the children the batch unlocked
	err      error
}

// batchFailed reports whether any attempt of the batch failed.
func batchFailed(batch []attemptResult) bool {
	for _, r := range batch {
		if r.err != nil {
			return true
		}
	}
	return false
}

// unlockTracker counts, for each step of a task's template with parents,
// the parents one coordinator loop has not yet seen complete. nil (the
// template is not loaded here) treats every completion as possibly
// unlocking a step.
type unlockTracker struct {
	children map[string][]string // parent -> its children
	waiting  map[string]int      // child -> parents not yet seen complete
}

func (e *Engine) newUnlockTracker(task *taskertype.Task) *unlockTracker {
	tmpl, err := e.cfg.Templates.Lookup(task.Namespace, task.Name, task.Version)
	if err != nil {
		return nil
	}
	u := &unlockTracker{children: map[string][]string{}, waiting: map[string]int{}}
	for _, st := range tmpl.Steps {
		for _, p := range st.DependsOn {
			u.children[p] = append(u.children[p], st.Name)
		}
		u.waiting[st.Name] = len(st.DependsOn)
	}
	return u
}

// hasChildren reports whether other steps depend on step (always, when the
// template is not loaded here).
func (u *unlockTracker) hasChildren(step string) bool {
	return u == nil || len(u.children[step]) > 0
}

// unlockSet is what completed steps unlocked: the children whose parents
// have all been seen complete, or unknown (no template to tell).
type unlockSet struct {
	names   []string
	unknown bool
}

func (u unlockSet) any() bool { return u.unknown || len(u.names) > 0 }

func (u *unlockSet) add(o unlockSet) {
	u.names = append(u.names, o.names...)
	u.unknown = u.unknown || o.unknown
}

// completed notes that step completed and returns the children of it that
// may now be ready (all of the child's parents seen complete).
func (u *unlockTracker) completed(step string) unlockSet {
	if u == nil {
		return unlockSet{unknown: true}
	}
	var out unlockSet
	for _, c := range u.children[step] {
		u.waiting[c]--
		if u.waiting[c] <= 0 {
			out.names = append(out.names, c)
		}
	}
	return out
}

// abandon waits for in-flight handlers after a database error; their leases
// expire and the rescuer returns the steps to the pool.
func (e *Engine) abandon(_ context.Context, _ int64, inflight map[int64]*store.ClaimedStep, results chan attemptResult, cancel func()) {
	cancel()
	for range inflight {
		<-results
	}
}

// execute runs one attempt of a step and reports on results.
func (e *Engine) execute(ctx context.Context, task *taskertype.Task, c *store.ClaimedStep, results chan<- attemptResult) {
	st := c.Step
	r := attemptResult{claimed: c, started: time.Now()}
	defer func() {
		r.duration = time.Since(r.started)
		results <- r
	}()
	h := e.handler(st.HandlerClass)
	if h == nil {
		r.err = taskertype.Permanent(fmt.Errorf("no handler registered for handler_class %q", st.HandlerClass))
		return
	}
	var cfg map[string]any
	if len(st.HandlerConfig) > 0 {
		if err := json.Unmarshal(st.HandlerConfig, &cfg); err != nil {
			r.err = taskertype.Permanent(fmt.Errorf("decode handler_config: %w", err))
			return
		}
	}
	inputs := st.Inputs
	if len(inputs) == 0 {
		inputs = json.RawMessage(`{}`)
	}
	sc := &taskertype.StepContext{
		TaskID: task.ID, StepID: st.ID, StepName: st.Name, HandlerClass: st.HandlerClass,
		Namespace: task.Namespace, TaskName: task.Name, Version: task.Version,
		Context: task.Context, Inputs: inputs, HandlerConfig: cfg, DependencyResults: c.DependencyResults,
		Attempt: st.Attempts, MaxAttempts: st.MaxAttempts,
	}
	if st.TimeoutSeconds > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(st.TimeoutSeconds)*time.Second)
		defer cancel()
	}
	out, err := e.callHandler(ctx, h, sc, &r)
	if err != nil {
		if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			r.timedOut = true
			err = fmt.Errorf("step timed out after %ds: %w", st.TimeoutSeconds, err)
		}
		r.err = err
		return
	}
	raw, err := marshalResults(out)
	if err != nil {
		r.err = taskertype.Permanent(fmt.Errorf("encode results: %w", err))
		return
	}
	if err := storableResults(raw); err != nil {
		r.err = err
		return
	}
	r.results = raw
}

func (e *Engine) callHandler(ctx context.Context, h taskertype.StepHandler, sc *taskertype.StepContext, r *attemptResult) (out any, err error) {
	defer func() {
		if p := recover(); p != nil {
			r.panicked = true
			e.log.Error("step handler panicked", "task_id", sc.TaskID, "step", sc.StepName, "panic", p, "stack", string(debug.Stack()))
			out, err = nil, fmt.Errorf("handler panicked: %v", p)
		}
	}()
	return h.Handle(ctx, sc)
}

func marshalResults(out any) (json.RawMessage, error) {
	switch v := out.(type) {
	case nil:
		return json.RawMessage(`{}`), nil
	case json.RawMessage:
		if !json.Valid(v) {
			return nil, errors.New("handler returned invalid JSON")
		}
		return v, nil
	case []byte:
		if !json.Valid(v) {
			return nil, errors.New("handler returned invalid JSON")
		}
		return v, nil
	}
	return json.Marshal(out)
}

// errorDoc is the stored error of a failed attempt.
type errorDoc struct {
	Message           string `json:"message"`
	Kind              string `json:"kind"` // retryable, permanent, timeout, panic, lease_expired
	Attempt           int    `json:"attempt"`
	RetryAfterSeconds *int   `json:"retry_after_seconds,omitempty"`
}

// finalDecision is a finalizer verdict applied with the last results.
type finalDecision struct {
	v  verdict
	tr *store.TransitionResult
}

// record turns a batch of attempt results into outcomes (deciding each with
// the state machine and the backoff calculator), stores them in one
// transaction and publishes the step events. release gives cancelled
// attempts back instead of failing them. With finalize the TaskFinalizer
// decides and applies its transition in the same transaction (the
// coordinator's last batch); the applied decision is returned for settle.
func (e *Engine) record(ctx context.Context, task *taskertype.Task, batch []attemptResult, release,
	finalize bool) (bool, *finalDecision, error) {
	now := e.now()
	outcomes := make([]store.StepOutcome, len(batch))
	events := make([][]taskertype.Event, len(batch))
	anyFailed := false
	for i, r := range batch {
		st := r.claimed.Step
		o, ev := e.outcome(task, st, r, now, release)
		outcomes[i], events[i] = o, ev
	}
	params := &store.StepRecordParams{TaskID: task.ID, Owner: e.cfg.Owner, Now: now, Outcomes: outcomes}
	var applied []bool
	var final *finalDecision
	var err error
	if finalize {
		var v verdict
		var tr *store.TransitionResult
		applied, tr, err = e.store.StepRecordFinalize(ctx, params, func(sum *store.TaskSummary) *store.TaskTransitionParams {
			v = e.judge(task, sum, e.cfg.Owner)
			return v.transition()
		})
		final = &finalDecision{v: v, tr: tr}
	} else {
		applied, err = e.store.StepRecord(ctx, params)
	}
	if err != nil {
		return false, nil, err
	}
	var publish []taskertype.Event
	for i, ok := range applied {
		if !ok {
			e.log.Warn("attempt result discarded: step no longer held by this coordinator",
				"task_id", task.ID, "step", batch[i].claimed.Step.Name)
			continue
		}
		if outcomes[i].To == taskertype.StepStateError {
			anyFailed = true
		}
		publish = append(publish, events[i]...)
	}
	e.bus.Publish(publish...)
	return anyFailed, final, nil
}

func (e *Engine) outcome(task *taskertype.Task, st *taskertype.Step, r attemptResult, now time.Time, release bool) (store.StepOutcome, []taskertype.Event) {
	ev := taskertype.Event{TaskID: task.ID, StepID: st.ID, StepName: st.Name, Time: now,
		Data: map[string]any{"attempt": st.Attempts, "duration_ms": r.duration.Milliseconds(), "handler_class": st.HandlerClass}}
	if r.err == nil {
		ev.Kind = taskertype.EventStepCompleted
		return store.StepOutcome{StepID: st.ID, To: stepTarget(statemachine.StepEventSucceed), Attempt: st.Attempts,
			Event: string(statemachine.StepEventSucceed), Results: r.results, Reason: "handler succeeded"}, []taskertype.Event{ev}
	}
	if release {
		return store.StepOutcome{StepID: st.ID, To: stepTarget(statemachine.StepEventRelease), Attempt: st.Attempts,
			Event: string(statemachine.StepEventRelease), GiveBackAttempt: true,
			Reason: "released by a coordinator shutting down"}, nil
	}
	doc := errorDoc{Message: storableText(r.err.Error()), Kind: "retryable", Attempt: st.Attempts}
	var perm *taskertype.PermanentError
	var retry *taskertype.RetryableError
	var after time.Duration
	switch {
	case errors.As(r.err, &perm):
		doc.Kind = "permanent"
	case r.timedOut:
		doc.Kind = "timeout"
	case r.panicked:
		doc.Kind = "panic"
	case errors.As(r.err, &retry):
		after = retry.After
	}
	var backoffReq *int
	if after > 0 {
		secs := int((after + time.Second - 1) / time.Second)
		backoffReq = &secs
		doc.RetryAfterSeconds = &secs
	}
	ev.Kind = taskertype.EventStepFailed
	ev.Data["error"] = doc.Message
	ev.Data["kind"] = doc.Kind
	var reason string
	switch {
	case doc.Kind == "permanent":
		reason = "permanent error"
	case !st.Retryable:
		reason = "step is not retryable"
	case st.Attempts >= st.MaxAttempts:
		reason = fmt.Sprintf("attempts exhausted (%d of %d)", st.Attempts, st.MaxAttempts)
	}
	if reason != "" {
		ev.Data["permanent"] = true
		ev.Data["reason"] = reason
		errJSON, _ := json.Marshal(doc)
		return store.StepOutcome{StepID: st.ID, To: stepTarget(statemachine.StepEventFailPermanent), Attempt: st.Attempts,
			Event: string(statemachine.StepEventFailPermanent), Error: errJSON, BackoffRequestSeconds: backoffReq,
			Reason: reason}, []taskertype.Event{ev}
	}
	delay := e.backoff.Delay(st.Attempts, task.Priority, after)
	next := now.Add(delay)
	errJSON, _ := json.Marshal(doc)
	ev.Data["permanent"] = false
	retryEv := taskertype.Event{Kind: taskertype.EventStepRetryScheduled, TaskID: task.ID, StepID: st.ID, StepName: st.Name,
		Time: now, Data: map[string]any{"attempt": st.Attempts, "next_retry_at": next, "delay_seconds": delay.Seconds(),
			"handler_class": st.HandlerClass}}
	return store.StepOutcome{StepID: st.ID, To: stepTarget(statemachine.StepEventFailRetryable), Attempt: st.Attempts,
			Event: string(statemachine.StepEventFailRetryable), Error: errJSON, NextRetryAt: &next,
			BackoffRequestSeconds: backoffReq, Reason: fmt.Sprintf("retry %d of %d in %s", st.Attempts+1, st.MaxAttempts, delay)},
		[]taskertype.Event{ev, retryEv}
}
