package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tasker-systems/tasker/internal/condition"
	"github.com/tasker-systems/tasker/internal/statemachine"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/internal/tracing/tracectx"
	"github.com/tasker-systems/tasker/taskertype"
)

// HandleResult is taskertype.HandleResult.
type HandleResult = taskertype.HandleResult

type attemptResult struct {
	claimed  *store.ClaimedStep
	results  json.RawMessage
	err      error
	panicked bool
	timedOut bool
	// skipped: the step's when condition was false; the handler did not run.
	skipped bool
	// expanded: a fan-out step was expanded (nothing left to record).
	expanded bool
	// throttle: the step's rate limit had no token; the handler did not run.
	throttle *throttled
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
	// A task with a concurrency key is admitted in the same batch; one at
	// its limit is parked or cancelled by its policy (concurrency.go).
	now := e.now()
	adm, tr, task, first, err := e.startAndClaim(context.WithoutCancel(ctx),
		startParams(taskID, e.cfg.Owner, coordinatorStarted, now),
		e.leased(&store.StepClaimParams{TaskID: taskID, Owner: e.cfg.Owner, FirstNames: e.rootNames}))
	if err != nil || adm.stop {
		return adm.res, err
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

	return e.drive(ctx, task, first, res)
}

// handleStarted is Handle for a task the runner's queue claim started
// (store.QueueClaimParams.Start, committed with the claim): the start
// event, then the first claim (the template's roots when this was the
// task's first start, store.StepClaimParams.FirstClaimNames, as for
// Handle's start) and the coordinator's loop. A crash before the first
// claim leaves the task in_progress with its record leased; once the lease
// expires, a runner claims it again and Handle resumes it.
func (e *Engine) handleStarted(ctx context.Context, st *store.QueueStarted) (*HandleResult, error) {
	task := st.Task
	e.bus.Publish(taskertype.Event{Kind: taskertype.EventTaskStarted, TaskID: task.ID, Time: e.now()})
	p := e.leased(&store.StepClaimParams{TaskID: task.ID, Owner: e.cfg.Owner, Limit: task.MaxParallelSteps,
		FirstNames: e.rootNames})
	p.Names = p.FirstClaimNames(st.Transition, task)
	first, err := e.stepClaim(context.WithoutCancel(ctx), p, e.template(task))
	if err != nil {
		return nil, err
	}
	if first == nil {
		first = []*store.ClaimedStep{}
	}
	return e.drive(ctx, task, first, &HandleResult{TaskID: task.ID, Status: task.State})
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

// coordinatorStarted is the reason of a coordinator's start transition.
const coordinatorStarted = "coordinator started"

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
func (e *Engine) claimInBackground(ctx context.Context, p *store.StepClaimParams, tmpl *template.Template,
	split bool) ([]*store.ClaimedStep, error) {
	if !split || len(p.Names) > 0 || p.Limit < 2*splitMin {
		return e.stepClaim(ctx, p, tmpl)
	}
	a, b := *p, *p
	a.Limit = p.Limit / 2
	b.Limit = p.Limit - a.Limit
	var wg sync.WaitGroup
	var first []*store.ClaimedStep
	var firstErr error
	wg.Go(func() { first, firstErr = e.stepClaim(ctx, &a, tmpl) })
	second, err := e.stepClaim(ctx, &b, tmpl)
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
func (e *Engine) claimedAt(c *store.ClaimedStep) time.Time {
	if c.Step.LastAttemptedAt != nil {
		return *c.Step.LastAttemptedAt
	}
	return e.now()
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
	fanOuts  map[string]bool     // the fan-out steps (see unlockedBy)
}

func (e *Engine) newUnlockTracker(task *taskertype.Task) *unlockTracker {
	tmpl, err := e.cfg.Templates.Lookup(task.Namespace, task.Name, task.Version)
	if err != nil {
		return nil
	}
	u := &unlockTracker{children: map[string][]string{}, waiting: map[string]int{}, fanOuts: fanOutNames(tmpl)}
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
	return u == nil || len(u.children[step]) > 0 || u.fanOutPlaceholder(step) != ""
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

// execute runs one attempt of a step and reports on results; cond is the
// step's `when` (nil: none) and fo its fan_out (nil: none; the engine runs
// it, see fanout.go).
func (e *Engine) execute(ctx context.Context, task *taskertype.Task, cond *condition.Condition, fo *template.FanOut,
	c *store.ClaimedStep, results chan<- attemptResult) {
	st := c.Step
	r := attemptResult{claimed: c, started: e.cfg.Clock.Now()}
	defer func() {
		r.duration = e.since(r.started)
		results <- r
	}()
	if fo != nil {
		e.runFanOut(ctx, e.cfg.Owner, task, fo, cond, c, &r)
		return
	}
	if run, err := conditionHolds(cond, task, c); err != nil || !run {
		r.err, r.skipped = err, err == nil
		return
	}
	h := e.handler(st.HandlerClass)
	if h == nil {
		r.err = taskertype.Permanent(fmt.Errorf("no handler registered for handler_class %q", st.HandlerClass))
		return
	}
	cfg, err := decodeHandlerConfig(st.HandlerConfig)
	if err != nil {
		r.err = taskertype.Permanent(fmt.Errorf("decode handler_config: %w", err))
		return
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
		TraceParent: tracectx.StepTraceParent(task.Tags, task.ID, st.ID, st.Attempts),
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

// decodeHandlerConfig decodes a step's stored handler_config for its
// handler. Numbers are float64 as encoding/json makes them, except those a
// float64 cannot hold exactly (integers beyond 2^53, values beyond its
// range such as 1e400): those stay json.Number with the digits the template
// wrote, rather than losing precision or failing the step.
func decodeHandlerConfig(raw json.RawMessage) (map[string]any, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var cfg map[string]any
	if err := dec.Decode(&cfg); err != nil {
		return nil, err
	}
	for k, v := range cfg {
		cfg[k] = plainNumbers(v)
	}
	return cfg, nil
}

// plainNumbers turns the json.Numbers in v that a float64 holds exactly
// into float64s.
func plainNumbers(v any) any {
	switch t := v.(type) {
	case json.Number:
		if f, ok := exactFloat(t); ok {
			return f
		}
		return t
	case map[string]any:
		for k, x := range t {
			t[k] = plainNumbers(x)
		}
	case []any:
		for i, x := range t {
			t[i] = plainNumbers(x)
		}
	}
	return v
}

// exactFloat reports n as a float64 when that loses nothing an integer
// would keep (an integer within ±2^53) or when n is a decimal in range.
func exactFloat(n json.Number) (float64, bool) {
	s := string(n)
	if !strings.ContainsAny(s, ".eE") {
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil || i > 1<<53 || i < -(1<<53) {
			return 0, false
		}
		return float64(i), true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
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
	return e.recordAs(ctx, e.cfg.Owner, task, batch, release, finalize)
}

// recordAs is record for attempts owner holds (an external worker's steps
// the pull API skips or fails before handing them out).
func (e *Engine) recordAs(ctx context.Context, owner string, task *taskertype.Task, batch []attemptResult, release,
	finalize bool) (bool, *finalDecision, error) {
	if batch = withoutExpanded(batch); len(batch) == 0 && !finalize {
		return false, nil, nil
	}
	e.blockBatchOnRetryAfter(ctx, task, batch) // a Retry-After blocks the step's rate limit first
	now := e.now()
	outcomes := make([]store.StepOutcome, len(batch))
	events := make([][]taskertype.Event, len(batch))
	anyFailed := false
	for i, r := range batch {
		st := r.claimed.Step
		o, ev := e.outcome(task, st, r, now, release)
		outcomes[i], events[i] = o, ev
	}
	params := &store.StepRecordParams{TaskID: task.ID, Owner: owner, Now: now, Outcomes: outcomes}
	var applied []bool
	var final *finalDecision
	var err error
	if finalize {
		var v verdict
		var tr *store.TransitionResult
		applied, v, tr, err = e.stepRecordFinalize(ctx, params, task)
		final = &finalDecision{v: v, tr: tr}
	} else {
		applied, err = e.stepRecord(ctx, params)
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
	if r.skipped {
		return e.skipOutcome(task, st, now)
	}
	if r.throttle != nil {
		return throttleOutcome(st, r), nil
	}
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
	why := retryDecision(st.Attempts, st.MaxAttempts, st.Retryable, doc.Kind == "permanent")
	reason := string(why)
	if why == noRetryExhausted {
		reason = fmt.Sprintf("attempts exhausted (%d of %d)", st.Attempts, st.MaxAttempts)
	}
	if why != retryAllowed {
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
