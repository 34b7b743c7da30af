package engine

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/tasker-systems/tasker/internal/statemachine"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/taskertype"
)

// Handler-class limits. A class limited to N (a template's handler_limits,
// Config.HandlerLimits, template.Registry.SetHandlerLimit) has at most N
// attempts running at once across every runner on the database. A step of
// a limited class is claimed like any step; before its handler starts (the
// Go coordinator) or before it is handed to a worker (the pull API) it asks
// the store for a slot (store.HandlerLimiter). A step refused one is
// throttled like a step without a rate-limit token: the attempt is given
// back, the step waits for retry, and the task is re-enqueued. When a slot
// frees (its step leaves in_progress by any path) the database makes the
// oldest waiting step of the class due at once; HandlerLimitRecheck is the
// floor for a wake missed while a refused step was being parked.
//
// Classes without a limit cost one atomic load per claimed step.

// HandlerLimitRecheck is how long a step refused a slot waits at most
// before it asks again, when no freed slot wakes it earlier.
const HandlerLimitRecheck = 2 * time.Second

// slotRefusal is why an attempt of a limited class did not start.
type slotRefusal struct {
	class   string
	limit   int
	running int
}

// slotReasonPrefix starts the reason of every slot throttle (explain looks
// for it).
const slotReasonPrefix = "handler class "

func (s *slotRefusal) String() string {
	return fmt.Sprintf("%s%s at limit %d (%d running)", slotReasonPrefix, s.class, s.limit, s.running)
}

// handlerSlots asks the store for the slots of this engine's limited
// steps. Concurrent asks of one class are coalesced into one statement, so
// a fan-out of a limited class does not queue on the class's lock one step
// at a time.
type handlerSlots struct {
	e       *Engine
	st      store.HandlerLimiter // nil: the store keeps no handler limits
	mu      sync.Mutex
	queues  map[string]*slotQueue
	missing sync.Once
}

type slotQueue struct {
	waiting []*slotReq
	busy    bool
}

type slotReq struct {
	owner string
	id    int64
	limit int
	done  chan *slotRefusal // nil: granted
}

func newHandlerSlots(e *Engine) *handlerSlots {
	hs := &handlerSlots{e: e, queues: map[string]*slotQueue{}}
	st := e.store
	for range 8 {
		if hl, ok := st.(store.HandlerLimiter); ok {
			hs.st = hl
			break
		}
		u, ok := st.(interface{ Unwrap() store.Store })
		if !ok {
			break
		}
		st = u.Unwrap()
	}
	return hs
}

// admit asks a slot of class (limited to limit) for step id held by owner:
// nil when it may start, or why not.
func (h *handlerSlots) admit(ctx context.Context, class string, limit int, owner string, id int64) *slotRefusal {
	req := &slotReq{owner: owner, id: id, limit: limit, done: make(chan *slotRefusal, 1)}
	h.mu.Lock()
	q := h.queues[class]
	if q == nil {
		q = &slotQueue{}
		h.queues[class] = q
	}
	q.waiting = append(q.waiting, req)
	if q.busy {
		h.mu.Unlock()
		return <-req.done
	}
	q.busy = true
	for len(q.waiting) > 0 {
		batch := q.waiting
		q.waiting = nil
		h.mu.Unlock()
		h.serve(ctx, class, batch)
		h.mu.Lock()
	}
	q.busy = false
	h.mu.Unlock()
	return <-req.done
}

// serve admits a batch of one class, one statement per owner and limit.
func (h *handlerSlots) serve(ctx context.Context, class string, batch []*slotReq) {
	type group struct {
		owner string
		limit int
	}
	byGroup := map[group][]*slotReq{}
	var order []group
	for _, r := range batch {
		g := group{r.owner, r.limit}
		if byGroup[g] == nil {
			order = append(order, g)
		}
		byGroup[g] = append(byGroup[g], r)
	}
	for _, g := range order {
		reqs := byGroup[g]
		ids := make([]int64, len(reqs))
		for i, r := range reqs {
			ids[i] = r.id
		}
		res, err := h.take(ctx, class, g.limit, g.owner, ids)
		for _, r := range reqs {
			switch {
			case err != nil:
				r.done <- &slotRefusal{class: class, limit: g.limit, running: -1}
			case res.Granted[r.id]:
				r.done <- nil
			default:
				r.done <- &slotRefusal{class: class, limit: g.limit, running: res.Running}
			}
		}
	}
}

// take runs one admission; a store without the capability grants all.
func (h *handlerSlots) take(ctx context.Context, class string, limit int, owner string,
	ids []int64) (*store.HandlerAdmitResult, error) {
	if h.st == nil {
		h.missing.Do(func() {
			h.e.log.Error("the store keeps no handler-class limits: limited classes run unlimited", "class", class)
		})
		res := &store.HandlerAdmitResult{Granted: map[int64]bool{}}
		for _, id := range ids {
			res.Granted[id] = true
		}
		return res, nil
	}
	// Not cut off by the caller's context: a slot taken unseen would be
	// held until the step leaves in_progress.
	res, err := h.st.HandlerAdmit(context.WithoutCancel(ctx), &store.HandlerAdmitParams{Class: class, Limit: limit,
		Owner: owner, StepIDs: ids})
	if err != nil {
		h.e.log.Warn("handler-class admission failed; throttling its steps", "class", class, "err", err)
	}
	return res, err
}

// slotThrottle is the throttle of an attempt refused a slot.
func (e *Engine) slotThrottle(r *slotRefusal) *throttled {
	reason := r.String()
	if r.running < 0 {
		reason = fmt.Sprintf("%s%s: the slots could not be counted (a database error)", slotReasonPrefix, r.class)
	}
	return &throttled{until: e.now().Add(HandlerLimitRecheck), slot: reason}
}

// limitedClass returns the limit of st's handler class (0: none).
func (e *Engine) limitedClass(st *taskertype.Step) int {
	if !e.cfg.Templates.HasHandlerLimits() {
		return 0
	}
	return e.cfg.Templates.HandlerLimit(st.HandlerClass)
}

// slotClaimed asks slots for the steps of an external worker's claim whose
// class is limited (one admission per class for all its steps), records
// the steps refused one as throttled, and returns the steps left for the
// worker to run.
func (e *Engine) slotClaimed(ctx context.Context, owner string, task *taskertype.Task,
	claimed []*store.ClaimedStep) ([]*store.ClaimedStep, error) {
	if !e.cfg.Templates.HasHandlerLimits() || len(claimed) == 0 {
		return claimed, nil
	}
	tmpl := e.template(task)
	var classes []string
	byClass := map[string][]int{}
	for i, c := range claimed {
		if e.limitedClass(c.Step) == 0 || (tmpl != nil && tmpl.FanOut(c.Step.Name) != nil) {
			continue
		}
		if byClass[c.Step.HandlerClass] == nil {
			classes = append(classes, c.Step.HandlerClass)
		}
		byClass[c.Step.HandlerClass] = append(byClass[c.Step.HandlerClass], i)
	}
	if len(classes) == 0 {
		return claimed, nil
	}
	drop := map[int]bool{}
	var settled []attemptResult
	for _, class := range classes {
		idx := byClass[class]
		limit := e.cfg.Templates.HandlerLimit(class)
		ids := make([]int64, len(idx))
		for j, i := range idx {
			ids[j] = claimed[i].Step.ID
		}
		res, err := e.slots.take(ctx, class, limit, owner, ids)
		for _, i := range idx {
			var refusal *slotRefusal
			switch {
			case err != nil:
				refusal = &slotRefusal{class: class, limit: limit, running: -1}
			case !res.Granted[claimed[i].Step.ID]:
				refusal = &slotRefusal{class: class, limit: limit, running: res.Running}
			default:
				continue
			}
			drop[i] = true
			settled = append(settled, attemptResult{claimed: claimed[i], throttle: e.slotThrottle(refusal)})
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

// explainHandlerLimits adds to the readiness of a task's steps of a
// limited class why they wait for a slot ("waiting: handler class
// ChargeCard at limit 2 (2 running)") or under which limit a ready step
// will start.
func (e *Engine) explainHandlerLimits(ctx context.Context, task *taskertype.Task, rs []*taskertype.StepReadiness) error {
	if !e.cfg.Templates.HasHandlerLimits() || e.slots.st == nil || task.State.Terminal() ||
		task.State == taskertype.TaskStateBlocked {
		return nil
	}
	waiting := false
	for _, r := range rs {
		waiting = waiting || waitsForStart(r)
	}
	if !waiting {
		return nil
	}
	steps, err := e.store.StepList(ctx, task.ID)
	if err != nil {
		return fmt.Errorf("explain handler limits: %w", err)
	}
	classOf := map[string]string{}
	var classes []string
	for _, st := range steps {
		if e.limitedClass(st) > 0 {
			classOf[st.Name] = st.HandlerClass
			classes = append(classes, st.HandlerClass)
		}
	}
	if len(classes) == 0 {
		return nil
	}
	running, err := e.slots.st.HandlerRunning(ctx, classes)
	if err != nil {
		return fmt.Errorf("explain handler limits: %w", err)
	}
	lastEvent := map[string]*taskertype.Transition{}
	trs, err := e.store.StepTransitions(ctx, task.ID)
	if err != nil {
		return fmt.Errorf("explain handler limits: %w", err)
	}
	for _, tr := range trs {
		lastEvent[tr.StepName] = tr
	}
	for _, r := range rs {
		class := classOf[r.Name]
		if class == "" || !waitsForStart(r) || !r.DependenciesSatisfied || !r.RetryEligible {
			continue
		}
		limit, n := e.cfg.Templates.HandlerLimit(class), running[class]
		at := fmt.Sprintf("handler class %s at limit %d (%d running)", class, limit, n)
		tr := lastEvent[r.Name]
		switch {
		case r.State == taskertype.StepStateWaitingForRetry && tr != nil &&
			tr.Event == string(statemachine.StepEventThrottle) && strings.HasPrefix(tr.Reason, slotReasonPrefix):
			if n >= limit {
				r.Reason = "waiting: " + at
			} else {
				r.Reason = fmt.Sprintf("waiting: handler class %s had no free slot (limit %d, %d running now); "+
					"asks again by %s", class, limit, n, r.NextRetryAt.Format(time.RFC3339Nano))
			}
		case r.Ready && n >= limit:
			r.Reason += "; " + at + ": it will wait for a slot"
		case r.Ready:
			r.Reason += fmt.Sprintf("; starts under handler class %s's limit %d (%d running)", class, limit, n)
		}
	}
	return nil
}
