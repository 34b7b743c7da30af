package engine

import (
	"context"
	"time"

	"github.com/tasker-systems/tasker/internal/clock"
	"github.com/tasker-systems/tasker/internal/condition"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/taskertype"
)

// taskRun is one pass of the WorkflowCoordinator over a task: the discover
// -> claim -> execute -> record loop, until nothing more can run. Handle
// runs passes (drive) until the TaskFinalizer settles the task.
//
// The loop (run) waits for one thing at a time and hands it to the method
// that reacts to it: a handler's result (onResults), a claim that finished
// (onClaimed), a background recording that committed (onRecorded), the
// caller's context ending (onShutdown), the shutdown grace running out
// (onGrace), handlers ignoring cancellation (onGiveUp) and the task's
// deadline (onDeadline).
//
// Claims and recordings run off the loop, one of each at a time, so that a
// wide task keeps two connections busy and the loop goes on collecting
// results: a batch of successes that is not the last is recorded in the
// background while a claim fills the slots those attempts freed.
// max_parallel_steps bounds the handlers running; steps whose results are
// still being recorded do not hold a slot. Steps their results unlock are
// claimed once the recording has committed. Batches with a failure, the
// last batch and batches during shutdown are recorded in the loop; with the
// last one the TaskFinalizer decides in the same transaction.
//
// Every claimed step is held by the engine's lease keeper (stepLeases) from
// its claim until the recording of its result has committed or the loop
// gives it up, whatever the loop is doing meanwhile.
//
// Every field belongs to the loop's goroutine unless it says otherwise;
// the goroutines it starts (handlers, a claim, a recording) talk to it only
// through the channels results, claiming and recorded.
type taskRun struct {
	e    *Engine
	task *taskertype.Task
	tmpl *template.Template // the task's template (nil: not loaded here): deadline, conditions
	res  *HandleResult      // the TaskFinalizer's decision, when the last batch settles the task

	ctx            context.Context    // the caller's: its end starts the shutdown
	dbctx          context.Context    // ctx without its cancellation: writes are never cut in half
	hctx           context.Context    // the handlers': cancelled after the shutdown grace
	cancelHandlers context.CancelFunc // cancels hctx

	// results receives every attempt's result, from the handler goroutines
	// (execute); buffered for a whole claim so that they never block.
	results  chan attemptResult
	inflight map[int64]*store.ClaimedStep // attempts whose handlers run
	executed int                          // attempts started by this pass
	failed   bool                         // an attempt failed: claim no more, record and finalize

	// Claims. claiming is the claim in flight (nil: none), written once by
	// its goroutine.
	claiming   chan backgroundClaim
	claimLimit int // the limit of the claim in flight
	// reclaim: a recording unlocked steps while the claim ran, so a short
	// claim does not mean the task is drained.
	reclaim bool
	// lastShort: the last claim took fewer steps than it could, so every
	// step then claimable was claimed; the next claim need only look at the
	// steps unlocked since (narrow, by name) instead of checking the
	// readiness of every pending step of the task (a long chain's claims
	// were quadratic in its length). A long list of names is not worth it
	// (see maxNarrowNames).
	lastShort bool
	narrow    unlockSet // unlocked by recordings committed since the last claim started
	// claimFailed: the last claim failed; wait for a result before the next.
	claimFailed bool
	// drained: the last claim took fewer steps than it could and no result
	// recorded since can have made another step ready (no child of a step
	// completed since has seen all its parents complete), so claiming again
	// would find nothing. Only an optimization: the finalizer re-checks
	// readiness before it decides (and a child whose other parents completed
	// elsewhere is claimed after the finalizer's "continue"). It spares a
	// wide fan-in a claim per recorded batch, each re-checking the join
	// step's thousands of parents.
	drained bool

	// Recordings. recorded is the background recording in flight (nil:
	// none), written once by its goroutine.
	pending        []attemptResult // results not yet handed to a recording
	pendingUnlocks unlockSet       // the children the results in pending unlock
	recorded       chan backgroundRecord
	unlocks        *unlockTracker // parents seen complete; loaded at the first result
	unlocksLoaded  bool

	// Shutdown. done is ctx.Done() until the shutdown begins; grace fires
	// when handlers must be cancelled, giveUp when they are abandoned.
	shutting      bool
	done          <-chan struct{}
	grace, giveUp <-chan time.Time

	// Deadline. deadline fires at the task's deadline (nil: none, or it
	// fired); expired says it did: the pass stops like a shutdown without
	// grace, and drive expires the task.
	deadline      <-chan time.Time
	deadlineTimer clock.Timer
	expired       bool
}

// condition is a step's `when` (nil: none, or the template is not loaded).
func (r *taskRun) condition(step string) *condition.Condition {
	if r.tmpl == nil {
		return nil
	}
	return r.tmpl.Condition(step)
}

func (e *Engine) newTaskRun(ctx context.Context, task *taskertype.Task, tmpl *template.Template, res *HandleResult,
	first int) *taskRun {
	// Handlers run under their own context so that a shutdown can let them
	// finish (ShutdownGrace) before cancelling them.
	hctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	r := &taskRun{e: e, task: task, tmpl: tmpl, res: res, ctx: ctx, dbctx: context.WithoutCancel(ctx), hctx: hctx,
		cancelHandlers: cancel, results: make(chan attemptResult, max(task.MaxParallelSteps, first, 1)),
		inflight: map[int64]*store.ClaimedStep{}, done: ctx.Done()}
	if at, _, ok := deadlineOf(tmpl, task); ok {
		r.deadlineTimer = e.cfg.Clock.NewTimer(max(at.Sub(e.now()), 0))
		r.deadline = r.deadlineTimer.C()
	}
	return r
}

// drive runs passes over the task and the TaskFinalizer until the task
// settles: a pass ends when nothing more of it can run, and when the
// finalizer then finds steps ready after all ("continue"), another pass
// claims them. first are steps Handle claimed with the task's start.
func (e *Engine) drive(ctx context.Context, task *taskertype.Task, first []*store.ClaimedStep, res *HandleResult) (*HandleResult, error) {
	tmpl := e.template(task) // once for the task's passes: its deadline and its steps' conditions
	for {
		if overdueOf(tmpl, task, e.now()) {
			return e.expire(ctx, task, res) // cancels the steps claimed with the start, if any
		}
		r := e.newTaskRun(ctx, task, tmpl, res, len(first))
		stopped, settled, err := r.run(first)
		first = nil
		res.StepsExecuted += r.executed
		switch {
		case err != nil:
			return res, err
		case r.expired:
			return e.expire(ctx, task, res)
		case stopped:
			return e.yield(task, res, "coordinator shutting down")
		case settled:
			return res, nil
		}
		if err := e.decide(ctx, task, res, e.cfg.Owner); err != nil || res.Outcome != ActionContinue {
			return res, err
		}
		if ctx.Err() != nil {
			return e.yield(task, res, "coordinator shutting down")
		}
	}
}

// run is the loop. first, when not nil, are steps already claimed (the
// pass's first claim). stopped is true when the caller's context ended
// before the task ran out of viable steps; settled when the last batch's
// recording applied the TaskFinalizer's decision (other than "continue")
// and reported it on res.
func (r *taskRun) run(first []*store.ClaimedStep) (stopped, settled bool, err error) {
	defer r.cancelHandlers()
	if r.deadlineTimer != nil {
		defer r.deadlineTimer.Stop()
	}
	// Whatever is still held when the loop returns (handlers that ignored
	// cancellation, a recording that failed for good) is left to expire.
	defer func() {
		for id := range r.inflight {
			r.e.leases.release(id)
		}
		for _, p := range r.pending {
			r.e.leases.release(p.claimed.Step.ID)
		}
	}()
	preclaimed := first != nil
	for {
		if preclaimed {
			r.start(first)
			preclaimed = false
			r.drained = len(first) < r.task.MaxParallelSteps
			r.lastShort = r.drained
		} else {
			r.maybeClaim()
		}
		if len(r.inflight) == 0 && r.recorded == nil && len(r.pending) == 0 && r.claiming == nil {
			return r.shutting || r.ctx.Err() != nil, false, nil
		}
		if r.maybeRecordInBackground() {
			continue // claim for the freed slots meanwhile
		}
		if r.recorded == nil && len(r.pending) > 0 {
			batch := r.pending
			r.pending = nil
			settled, err := r.recordInLoop(batch)
			if err != nil || settled {
				return false, settled, err
			}
			continue
		}
		if exit, stopped, err := r.wait(); exit {
			return stopped, false, err
		}
	}
}

// wait takes the next thing that happens and reacts to it; exit says the
// loop must return (stopped, err).
func (r *taskRun) wait() (exit, stopped bool, err error) {
	select {
	case res := <-r.results:
		r.onResults(res)
	case c := <-r.claiming:
		return r.onClaimed(c)
	case b := <-r.recorded:
		return r.onRecorded(b)
	case <-r.done:
		r.onShutdown()
	case <-r.grace:
		r.onGrace()
	case <-r.giveUp:
		return r.onGiveUp()
	case <-r.deadline:
		r.onDeadline()
	}
	return false, false, nil
}

// start runs claimed attempts: each is held by the lease keeper, counted
// and handed to a handler goroutine; step.started is published for all.
func (r *taskRun) start(claimed []*store.ClaimedStep) {
	events := make([]taskertype.Event, 0, len(claimed))
	for _, c := range claimed {
		r.inflight[c.Step.ID] = c
		r.e.leases.hold(r.e.claimedAt(c), c.Step.ID)
		r.executed++
		if r.startLimited(c) { // a step with a rate limit starts when it has a token
			continue
		}
		events = append(events, taskertype.Event{Kind: taskertype.EventStepStarted, TaskID: r.task.ID,
			StepID: c.Step.ID, StepName: c.Step.Name, Time: r.e.claimedAt(c),
			Data: map[string]any{"attempt": c.Step.Attempts, "handler_class": c.Step.HandlerClass}})
		go r.e.execute(r.hctx, r.task, r.condition(c.Step.Name), fanOutOf(r.tmpl, c.Step.Name), c, r.results)
	}
	r.e.bus.Publish(events...)
}

// maybeClaim starts a claim in the background for the free slots, unless a
// claim is in flight or none is worth making (drained, the last claim
// failed, a step failed, shutting down).
func (r *taskRun) maybeClaim() {
	if r.claiming != nil || r.drained || r.claimFailed || r.shutting || r.failed || r.ctx.Err() != nil {
		return
	}
	room := r.task.MaxParallelSteps - len(r.inflight)
	if room <= 0 {
		return
	}
	r.claimLimit, r.reclaim = room, false
	var names []string
	if r.lastShort && !r.narrow.unknown && len(r.narrow.names) > 0 && len(r.narrow.names) <= maxNarrowNames {
		names = r.narrow.names
	}
	r.narrow = unlockSet{} // this claim sees every unlock committed before it
	ch := make(chan backgroundClaim, 1)
	r.claiming = ch
	split := len(r.inflight) == 0 && r.recorded == nil // nothing else of this task keeps the database busy
	e, dbctx, taskID, tmpl := r.e, r.dbctx, r.task.ID, r.tmpl
	go func() {
		// The claim's time is the database's when it runs: a time taken
		// here could precede results recorded while the claim waited, and
		// would shorten its lease.
		claimed, err := e.claimInBackground(dbctx, e.leased(&store.StepClaimParams{TaskID: taskID, Owner: e.cfg.Owner,
			Limit: room, Names: names}), tmpl, split)
		ch <- backgroundClaim{claimed: claimed, err: err}
	}()
}

// maybeRecordInBackground hands the pending results to a recording in the
// background when no recording is in flight and the batch is not one the
// loop records itself: one with a failure, the last one (nothing runs and
// nothing more is expected to be claimable), or one during shutdown.
func (r *taskRun) maybeRecordInBackground() bool {
	lastPending := len(r.inflight) == 0 && r.claiming == nil && ((r.drained && !r.pendingUnlocks.any()) || r.failed)
	if r.recorded != nil || len(r.pending) == 0 || r.shutting || r.ctx.Err() != nil || batchFailed(r.pending) || lastPending {
		return false
	}
	batch, unlocked := r.pending, r.pendingUnlocks
	r.pending, r.pendingUnlocks = nil, unlockSet{}
	ch := make(chan backgroundRecord, 1)
	r.recorded = ch
	split := r.claiming == nil // nothing else of this task keeps the database busy
	e, dbctx, task := r.e, r.dbctx, r.task
	go func() {
		err := e.recordInBackground(dbctx, task, batch, split)
		for _, res := range batch {
			e.leases.release(res.claimed.Step.ID) // recorded, or given up to the rescuer
		}
		ch <- backgroundRecord{unlocked: unlocked, err: err}
	}()
	return true
}

// onResults takes a finished attempt and every other already waiting, and
// adds them to the pending batch with the children they unlock.
func (r *taskRun) onResults(first attemptResult) {
	batch := []attemptResult{first}
drain:
	for {
		select {
		case res := <-r.results:
			batch = append(batch, res)
		default:
			break drain
		}
	}
	for _, res := range batch {
		delete(r.inflight, res.claimed.Step.ID)
	}
	r.claimFailed = false
	if !r.unlocksLoaded {
		r.unlocks, r.unlocksLoaded = r.e.newUnlockTracker(r.task), true
	}
	for _, res := range batch {
		if res.throttle != nil {
			r.executed-- // given back: the handler did not run
		} else if res.err == nil {
			r.pendingUnlocks.add(r.unlocks.unlockedBy(res))
		}
	}
	r.pending = append(r.pending, batch...)
}

// onClaimed starts what a background claim took. A failed claim ends the
// pass when nothing else of it is under way; otherwise the running attempts
// are finished and recorded first (recording retries through the fault) and
// the next claim waits for a result.
func (r *taskRun) onClaimed(c backgroundClaim) (exit, stopped bool, err error) {
	r.claiming = nil
	if c.err != nil {
		if len(c.claimed) > 0 {
			r.start(c.claimed) // one half of a split claim failed: run what the other took
		}
		if len(r.inflight) == 0 && r.recorded == nil && len(r.pending) == 0 {
			return true, false, c.err
		}
		r.e.log.Warn("claim steps; recording the running ones first", "task_id", r.task.ID, "err", c.err)
		r.claimFailed, r.lastShort = true, false
		return false, false, nil
	}
	r.lastShort = len(c.claimed) < r.claimLimit
	r.drained = r.lastShort && !r.reclaim
	r.start(c.claimed)
	return false, false, nil
}

// onRecorded notes a committed background recording: the steps it
// unlocked can be claimed now. A recording that failed for good ends the
// pass: the running handlers are waited for and their leases left to expire.
func (r *taskRun) onRecorded(b backgroundRecord) (exit, stopped bool, err error) {
	r.recorded = nil
	r.claimFailed = false
	if b.err != nil {
		r.abandon()
		return true, false, b.err
	}
	if b.unlocked.any() {
		r.unlock(b.unlocked)
	}
	return false, false, nil
}

// unlock notes steps made claimable by a committed recording.
func (r *taskRun) unlock(u unlockSet) {
	r.drained = false
	if r.claiming != nil {
		r.reclaim = true // the claim in flight may have run before they were committed
	}
	r.narrow.add(u)
}

// onShutdown begins the shutdown: no new claims, handlers get ShutdownGrace.
func (r *taskRun) onShutdown() {
	r.done, r.shutting = nil, true
	r.grace = r.e.after(r.e.cfg.ShutdownGrace)
}

// onDeadline stops the pass at the task's deadline: no new claims, and the
// running handlers are cancelled at once (no grace); drive then expires the
// task.
func (r *taskRun) onDeadline() {
	r.deadline, r.expired = nil, true
	r.done, r.shutting = nil, true
	r.onGrace()
}

// onGrace cancels the handlers still running; the attempts that come back
// are released (not counted), see recordInLoop.
func (r *taskRun) onGrace() {
	r.cancelHandlers()
	r.grace = nil
	r.giveUp = r.e.after(handlerGiveUp)
}

// onGiveUp leaves handlers that ignore cancellation, which cannot be
// stopped: their leases are no longer extended, expire, and the rescuer
// counts those attempts as failed, as after a crash.
func (r *taskRun) onGiveUp() (exit, stopped bool, err error) {
	r.e.log.Warn("handlers ignored cancellation; leaving their step leases to expire",
		"task_id", r.task.ID, "steps", len(r.inflight))
	return true, true, nil
}

// abandon waits for the handlers still running after a recording failed for
// good; their leases expire and the rescuer returns the steps to the pool.
func (r *taskRun) abandon() {
	r.cancelHandlers()
	for range r.inflight {
		<-r.results
	}
}

// recordInLoop records a batch in the loop: one with a failure, the last
// one, or one during shutdown (attempts cut off by the grace are released).
// With the last batch (nothing in flight and nothing more expected to be
// claimable, or a step failed) the TaskFinalizer decides in the recording's
// transaction; settled reports a decision other than "continue".
func (r *taskRun) recordInLoop(batch []attemptResult) (settled bool, err error) {
	if r.pendingUnlocks.any() {
		r.unlock(r.pendingUnlocks) // recorded in the loop: the unlocked steps are claimable after it
	}
	r.pendingUnlocks = unlockSet{}
	last := len(r.inflight) == 0 && r.claiming == nil && !r.shutting && r.ctx.Err() == nil &&
		(r.drained || r.failed || batchFailed(batch))
	var anyFailed bool
	var final *finalDecision
	err = r.e.retryDB(r.dbctx, "record step results", r.e.cfg.StepLease, func() (err error) {
		anyFailed, final, err = r.e.record(r.dbctx, r.task, batch, r.shutting && r.grace == nil, last)
		return err
	})
	for _, res := range batch {
		r.e.leases.release(res.claimed.Step.ID) // recorded, or given up to the rescuer
	}
	if err != nil {
		r.abandon()
		return false, err
	}
	r.failed = r.failed || anyFailed
	if final == nil {
		return false, nil
	}
	r.e.settle(r.dbctx, r.task, r.res, final.v, final.tr)
	if r.res.Outcome != ActionContinue {
		return true, nil
	}
	r.drained, r.failed, r.lastShort = false, false, false // steps are ready after all: claim them
	return false, nil
}
