package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tasker-systems/tasker/internal/statemachine"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/taskertype"
)

// Shared rate limits. A step template's rate_limit names a limit of its
// template's rate_limits (see template.RateLimit): a token bucket shared by
// every task and runner, kept in the database (store.RateLimiter). A step of
// a limit is claimed like any step; before its handler starts (the Go
// coordinator) or before it is handed to a worker (the pull API) it takes a
// token. A step that gets none is throttled: the attempt is given back (not
// counted), the step waits for retry until the bucket will have a token for
// it, and the task is re-enqueued for then by the finalizer, like a backoff:
// no runner polls for tokens. When any step of a limit fails with a
// server's Retry-After (429/503 from tasker:http, tasker.Retryable(err,
// after), a Ruby handler's retry_after_seconds), the limit is blocked until
// then for every task and runner, before the failure is recorded; the step
// that was told retries per its own backoff (at least the Retry-After).
//
// Steps without a limit take none of these paths: a template without
// rate_limits costs one nil test per claimed step.

// throttled is why an attempt did not start: its limit had no token.
type throttled struct {
	limit string
	until time.Time // when a token is due for it
	// blocked: the limit is blocked by a Retry-After until then.
	blocked bool
	// slot, when set, is the reason of a step refused a handler-class slot
	// (handlerlimit.go); limit is then empty.
	slot string
}

// reason is the throttle's transition reason.
func (t *throttled) reason() string {
	if t.slot != "" {
		return t.slot
	}
	if t.blocked {
		return fmt.Sprintf("rate limit %s blocked by a server's Retry-After until %s", t.limit, t.until.Format(time.RFC3339Nano))
	}
	return fmt.Sprintf("rate limit %s: no token until %s", t.limit, t.until.Format(time.RFC3339Nano))
}

// throttleOutcome gives a throttled attempt back and makes the step wait
// for its token (waiting_for_retry until then).
func throttleOutcome(st *taskertype.Step, r attemptResult) store.StepOutcome {
	next := r.throttle.until
	return store.StepOutcome{StepID: st.ID, To: stepTarget(statemachine.StepEventThrottle), Attempt: st.Attempts,
		Event: string(statemachine.StepEventThrottle), NextRetryAt: &next, GiveBackAttempt: true, Reason: r.throttle.reason()}
}

// throttleRetry is how long a step waits when its limit could not be read
// (a database error): it is throttled, not failed.
const throttleRetry = time.Second

// rateLimiter takes tokens for this engine's coordinators and pull-API
// claims. Concurrent takes of one limit are coalesced: the first caller
// takes for everyone waiting (one statement for all), then again for
// those who arrived meanwhile, so that a fan-out or many tasks of one limit
// do not queue on the bucket's row lock one step at a time.
type rateLimiter struct {
	e      *Engine
	st     store.RateLimiter // nil: the store keeps no rate limits
	mu     sync.Mutex
	queues map[string]*takeQueue
	// missing logs once that st is nil.
	missing sync.Once
}

type takeQueue struct {
	waiting []*takeReq
	busy    bool // a caller is taking for the queue
	// spare tokens the last take got beyond what its batch asked for,
	// usable until spareUntil (see spareTTL).
	spare      int
	spareUntil time.Time
}

// spareTTL and maxSpare bound the tokens a take gets ahead of demand. A
// take asks for floor(rate x spareTTL) more tokens than its batch needs (at
// most maxSpare): at a high rate the next steps of the limit in this
// process then start without a statement of their own, and a token is
// used at most spareTTL after the database granted it (unused ones are
// dropped, never returned: a limit is never exceeded, only underused). At
// rates under 100 a second no token is taken ahead.
const (
	spareTTL = 10 * time.Millisecond
	maxSpare = 64
)

// spareFor is how many tokens a take of lim asks for beyond its batch.
func spareFor(lim *template.RateLimit) int {
	return int(min(lim.Rate()*spareTTL.Seconds(), maxSpare))
}

type takeReq struct {
	n    int
	done chan takeRes
}

// takeRes is a take's answer: the first granted of the n steps asked for
// may start, the others wait until next[i - granted].
type takeRes struct {
	granted int
	next    []time.Time
	blocked bool
}

func newRateLimiter(e *Engine) *rateLimiter {
	return &rateLimiter{e: e, st: rateLimiterOf(e.store), queues: map[string]*takeQueue{}}
}

// rateLimiterOf finds the rate-limit capability of st, looking through
// wrappers that time or trace a store (Unwrap), which pass on only the
// capabilities they know of.
func rateLimiterOf(st store.Store) store.RateLimiter {
	for range 8 {
		if rl, ok := st.(store.RateLimiter); ok {
			return rl
		}
		u, ok := st.(interface{ Unwrap() store.Store })
		if !ok {
			return nil
		}
		st = u.Unwrap()
	}
	return nil
}

// take asks limit lim for n tokens.
func (l *rateLimiter) take(ctx context.Context, lim *template.RateLimit, n int) takeRes {
	req := &takeReq{n: n, done: make(chan takeRes, 1)}
	l.mu.Lock()
	q := l.queues[lim.Name]
	if q == nil {
		q = &takeQueue{}
		l.queues[lim.Name] = q
	}
	if q.spare >= n && time.Now().Before(q.spareUntil) {
		q.spare -= n
		l.mu.Unlock()
		return takeRes{granted: n}
	}
	q.waiting = append(q.waiting, req)
	if q.busy {
		l.mu.Unlock()
		return <-req.done
	}
	q.busy = true
	for len(q.waiting) > 0 {
		batch := q.waiting
		q.waiting = nil
		l.mu.Unlock()
		spare := l.serve(ctx, lim, batch)
		l.mu.Lock()
		q.spare, q.spareUntil = spare, time.Now().Add(spareTTL)
	}
	q.busy = false
	l.mu.Unlock()
	return <-req.done
}

// serve takes for a batch of requests in one statement and answers each,
// in order; it returns the tokens granted beyond the batch's (spareFor).
func (l *rateLimiter) serve(ctx context.Context, lim *template.RateLimit, batch []*takeReq) (spare int) {
	want := 0
	for _, r := range batch {
		want += r.n
	}
	extra := spareFor(lim)
	granted, denied := 0, 0
	var tk *store.RateLimitTake
	var err error
	if l.st == nil {
		granted = want // no bucket to take from: the store keeps no limits
		l.missing.Do(func() {
			l.e.log.Error("the store keeps no rate limits: steps of rate limits run unlimited", "limit", lim.Name)
		})
	} else {
		// A take is not cut off by the caller's context: a token taken
		// unseen would be lost.
		tk, err = l.st.RateLimitTake(context.WithoutCancel(ctx), &store.RateLimitParams{Name: lim.Name, Rate: lim.Rate(),
			Burst: lim.Burst, Want: want + extra})
		if err != nil {
			l.e.log.Warn("rate limit take failed; throttling its steps", "limit", lim.Name, "err", err)
		} else {
			granted = tk.Granted
		}
	}
	now := l.e.now()
	for _, r := range batch {
		res := takeRes{granted: min(granted, r.n)}
		granted -= res.granted
		for range r.n - res.granted {
			switch {
			case err != nil:
				res.next = append(res.next, now.Add(throttleRetry))
			default:
				next := tk.NextToken(denied, lim.Rate())
				res.next = append(res.next, next)
				// The first steps denied while the limit is blocked wait
				// exactly for the block's end.
				res.blocked = res.blocked || (!tk.BlockedUntil.IsZero() && !next.After(tk.BlockedUntil))
			}
			denied++
		}
		r.done <- res
	}
	return granted // what the batch left: taken ahead
}

// admit takes a token for one attempt of a step of limit lim: nil when it
// may start, or why it may not.
func (l *rateLimiter) admit(ctx context.Context, lim *template.RateLimit) *throttled {
	res := l.take(ctx, lim, 1)
	if res.granted == 1 {
		return nil
	}
	return &throttled{limit: lim.Name, until: res.next[0], blocked: res.blocked}
}

// startLimited starts an attempt of a step that names a rate limit or whose
// handler class is limited, and reports true; false when neither (the
// caller starts it as usual). The step's condition is evaluated first (a
// skipped step needs no slot and no token); then the handler starts only
// with a slot of its class (handlerlimit.go) and a token of its limit, and
// step.started is published then. Without them the attempt comes back
// throttled.
func (r *taskRun) startLimited(c *store.ClaimedStep) bool {
	var lim *template.RateLimit
	if r.tmpl != nil && r.tmpl.HasRateLimits() {
		lim = r.tmpl.StepRateLimit(c.Step.Name)
	}
	slots := r.e.limitedClass(c.Step)
	if (lim == nil && slots == 0) || fanOutOf(r.tmpl, c.Step.Name) != nil { // a fan-out's expansion runs no handler: its items take tokens
		return false
	}
	e, task, ctx, results := r.e, r.task, r.hctx, r.results
	cond := r.condition(c.Step.Name)
	go func() {
		var no *slotRefusal
		decided := false
		if slots > 0 {
			no, decided = e.slots.decision(c.Step) // admitted in the claim's transaction (no condition)
		}
		if run, err := conditionHolds(cond, task, c); err != nil || !run || ctx.Err() != nil {
			e.execute(ctx, task, cond, nil, c, results) // skipped, failed or cancelled without a token
			return
		}
		data := map[string]any{"attempt": c.Step.Attempts, "handler_class": c.Step.HandlerClass}
		if slots > 0 {
			if !decided {
				no = e.slots.admit(ctx, c.Step.HandlerClass, slots, e.cfg.Owner, c.Step.ID)
			}
			if no != nil {
				results <- attemptResult{claimed: c, throttle: e.slotThrottle(no), started: e.cfg.Clock.Now()}
				return
			}
			data["handler_limit"] = slots
		}
		if lim != nil {
			if th := e.limits.admit(ctx, lim); th != nil {
				results <- attemptResult{claimed: c, throttle: th, started: e.cfg.Clock.Now()}
				return
			}
			data["rate_limit"] = lim.Name
		}
		e.bus.Publish(taskertype.Event{Kind: taskertype.EventStepStarted, TaskID: task.ID, StepID: c.Step.ID,
			StepName: c.Step.Name, Time: e.now(), Data: data})
		e.execute(ctx, task, nil, nil, c, results) // the condition held
	}()
	return true
}

// throttleClaimed takes tokens for the steps of an external worker's claim
// that name a rate limit (one take per limit for all its steps), records
// the steps that got none as throttled, and returns the steps left for the
// worker to run.
func (e *Engine) throttleClaimed(ctx context.Context, owner string, task *taskertype.Task,
	claimed []*store.ClaimedStep) ([]*store.ClaimedStep, error) {
	tmpl := e.template(task)
	if tmpl == nil || !tmpl.HasRateLimits() || len(claimed) == 0 {
		return claimed, nil
	}
	var limits []*template.RateLimit
	byLimit := map[string][]int{}
	for i, c := range claimed {
		if lim := tmpl.StepRateLimit(c.Step.Name); lim != nil && tmpl.FanOut(c.Step.Name) == nil {
			if byLimit[lim.Name] == nil {
				limits = append(limits, lim)
			}
			byLimit[lim.Name] = append(byLimit[lim.Name], i)
		}
	}
	if len(limits) == 0 {
		return claimed, nil
	}
	drop := map[int]bool{}
	var settled []attemptResult
	for _, lim := range limits {
		idx := byLimit[lim.Name]
		res := e.limits.take(ctx, lim, len(idx))
		for j, i := range idx[res.granted:] {
			drop[i] = true
			settled = append(settled, attemptResult{claimed: claimed[i],
				throttle: &throttled{limit: lim.Name, until: res.next[j], blocked: res.blocked}})
		}
	}
	if _, _, err := e.recordAs(context.WithoutCancel(ctx), owner, task, settled, false, false); err != nil {
		return nil, err
	}
	run := claimed[:0:0]
	for i, c := range claimed {
		if !drop[i] {
			run = append(run, c)
		}
	}
	return run, nil
}

// blockOnRetryAfter blocks the rate limit of a task's step when the step's
// attempt failed with a server-requested delay (a Retry-After): no step of
// the limit starts before the delay has passed, in any task or runner. It
// runs before the failure is recorded, so that whoever sees the failure
// also sees the block. tmpl may be nil (looked up when needed). A block
// that cannot be written is logged: the step itself still waits.
func (e *Engine) blockOnRetryAfter(ctx context.Context, task *taskertype.Task, tmpl *template.Template, step string,
	err error) *template.Template {
	var retry *taskertype.RetryableError
	if err == nil || !errors.As(err, &retry) || retry.After <= 0 {
		return tmpl
	}
	if tmpl == nil {
		if tmpl = e.template(task); tmpl == nil {
			return nil
		}
	}
	lim := tmpl.StepRateLimit(step)
	if lim == nil || e.limits.st == nil {
		return tmpl
	}
	d := min(retry.After, e.cfg.Backoff.MaxServerDelay)
	until, berr := e.limits.st.RateLimitBlock(context.WithoutCancel(ctx), &store.RateLimitParams{Name: lim.Name,
		Rate: lim.Rate(), Burst: lim.Burst, For: d})
	if berr != nil {
		e.log.Warn("block rate limit after a Retry-After", "limit", lim.Name, "task_id", task.ID, "step", step, "err", berr)
		return tmpl
	}
	e.log.Info("rate limit blocked by a server's Retry-After", "limit", lim.Name, "until", until, "task_id", task.ID,
		"step", step)
	return tmpl
}

// blockBatchOnRetryAfter is blockOnRetryAfter for every result of a batch.
func (e *Engine) blockBatchOnRetryAfter(ctx context.Context, task *taskertype.Task, batch []attemptResult) {
	var tmpl *template.Template
	for _, r := range batch {
		if r.err != nil {
			tmpl = e.blockOnRetryAfter(ctx, task, tmpl, r.claimed.Step.Name, r.err)
		}
	}
}

// explainRateLimits adds to the readiness of a task's steps that name a
// rate limit why they wait for it: the limit blocked by a Retry-After
// ("waiting: rate limit stripe until T"), a step throttled for want of a
// token ("waiting: rate limit stripe (no token until T)"), or a ready step
// whose limit is empty.
func (e *Engine) explainRateLimits(ctx context.Context, task *taskertype.Task, rs []*taskertype.StepReadiness) error {
	tmpl := e.template(task)
	if tmpl == nil || !tmpl.HasRateLimits() || e.limits.st == nil || task.State.Terminal() ||
		task.State == taskertype.TaskStateBlocked {
		return nil
	}
	var names []string
	throttledNow := false
	for _, r := range rs {
		if lim := tmpl.StepRateLimit(r.Name); lim != nil && waitsForStart(r) {
			names = append(names, lim.Name)
			throttledNow = throttledNow || r.State == taskertype.StepStateWaitingForRetry
		}
	}
	if len(names) == 0 {
		return nil
	}
	states, err := e.limits.st.RateLimitStates(ctx, names)
	if err != nil {
		return fmt.Errorf("explain rate limits: %w", err)
	}
	byName := map[string]*store.RateLimitState{}
	for _, s := range states {
		byName[s.Name] = s
	}
	lastEvent := map[string]string{}
	if throttledNow {
		trs, err := e.store.StepTransitions(ctx, task.ID)
		if err != nil {
			return fmt.Errorf("explain rate limits: %w", err)
		}
		for _, tr := range trs {
			lastEvent[tr.StepName] = tr.Event
		}
	}
	for _, r := range rs {
		lim := tmpl.StepRateLimit(r.Name)
		if lim == nil || !waitsForStart(r) || !r.DependenciesSatisfied || !r.RetryEligible {
			continue
		}
		st := byName[lim.Name]
		switch {
		case st != nil && st.BlockedUntil.After(st.Now):
			r.Reason = fmt.Sprintf("waiting: rate limit %s until %s (a server's Retry-After; %s from now)", lim.Name,
				st.BlockedUntil.Format(time.RFC3339), st.BlockedUntil.Sub(st.Now).Round(time.Second))
		case r.State == taskertype.StepStateWaitingForRetry && !r.BackoffExpired &&
			lastEvent[r.Name] == string(statemachine.StepEventThrottle):
			r.Reason = fmt.Sprintf("waiting: rate limit %s (no token until %s)", lim.Name, r.NextRetryAt.Format(time.RFC3339Nano))
		case r.Ready && st != nil && st.TokensAt(st.Now) < 1:
			r.Reason += fmt.Sprintf("; rate limit %s has no token until %s", lim,
				st.Now.Add(st.Wait(st.Now)).Format(time.RFC3339Nano))
		case r.Ready:
			r.Reason += fmt.Sprintf("; starts under rate limit %s", lim)
		}
	}
	return nil
}

// waitsForStart reports a step that has not started: pending or waiting
// for retry.
func waitsForStart(r *taskertype.StepReadiness) bool {
	return r.State == taskertype.StepStatePending || r.State == taskertype.StepStateWaitingForRetry
}
