package engine

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tasker-systems/tasker/internal/statemachine"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/taskertype"
)

// Handler-class limits. A class limited to N (a template's handler_limits,
// Config.HandlerLimits, template.Registry.SetHandlerLimit) has at most N
// attempts running at once across every runner on the database. A step of
// a limited class is claimed like any step and takes its slot in the
// claim's own transaction (admitSlotsInBatch: one store.Tx.HandlerAdmit per
// class for the whole claim batch), so a slot costs no round trip or commit
// of its own. A step with a `when` condition (a skipped step needs no
// slot) asks for its slot after its condition held, before its handler
// starts (the Go coordinator) or before it is handed to a worker (the pull
// API), in a statement of its own (store.HandlerLimiter). A step refused one is
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

	// decided are the admissions made in claim batches, by step id, until
	// the step's attempt starts (decision takes them).
	decidedMu sync.Mutex
	decided   map[int64]slotDecision
}

// slotDecision is the admission of one claimed attempt in its claim batch.
type slotDecision struct {
	attempt int
	refusal *slotRefusal // nil: granted
	at      time.Time    // when the batch committed (system time)
}

// decidedKeep is how long an admission no attempt start took is kept once
// more than decidedMax are held: an attempt claimed and then released
// without starting (a shutdown) leaves its admission behind.
const (
	decidedKeep = 10 * time.Minute
	decidedMax  = 4096
)

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
	hs := &handlerSlots{e: e, queues: map[string]*slotQueue{}, decided: map[int64]slotDecision{}}
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

// remember keeps the admissions of a committed claim batch for the
// attempts' starts.
func (h *handlerSlots) remember(ds map[int64]slotDecision) {
	if len(ds) == 0 {
		return
	}
	now := time.Now()
	h.decidedMu.Lock()
	defer h.decidedMu.Unlock()
	if len(h.decided) > decidedMax {
		maps.DeleteFunc(h.decided, func(_ int64, d slotDecision) bool { return now.Sub(d.at) > decidedKeep })
	}
	for id, d := range ds {
		d.at = now
		h.decided[id] = d
	}
}

// decision takes the admission of st's attempt made in its claim batch:
// ok false when there was none (the attempt asks with admit).
func (h *handlerSlots) decision(st *taskertype.Step) (refusal *slotRefusal, ok bool) {
	h.decidedMu.Lock()
	d, found := h.decided[st.ID]
	if found {
		delete(h.decided, st.ID)
	}
	h.decidedMu.Unlock()
	if !found || d.attempt != st.Attempts {
		return nil, false
	}
	return d.refusal, true
}

// batchSlotLimit is the limit under which a claimed step takes its slot in
// its claim's transaction (0: not there: its class has no limit, or it is a
// fan-out placeholder, which runs no handler, or it has a condition).
func (e *Engine) batchSlotLimit(tmpl *template.Template, st *taskertype.Step) int {
	limit := e.limitedClass(st)
	if limit == 0 || fanOutOf(tmpl, st.Name) != nil || (tmpl != nil && tmpl.Condition(st.Name) != nil) {
		return 0
	}
	return limit
}

// admitSlotsInBatch gives the steps of limited classes claimed by the
// requests run (those with admitSlots) their slots inside the claim
// batch's transaction: one store.Tx.HandlerAdmit per class, owner and
// limit, classes in one order so that two batches never wait for each
// other's class locks in a cycle. Each request's decisions go to its
// slots, remembered by the engine once the batch committed.
func (e *Engine) admitSlotsInBatch(ctx context.Context, tx store.Tx, run []*claimReq) error {
	type group struct {
		class, owner string
		limit        int
	}
	groups := map[group][]*store.ClaimedStep{}
	for _, r := range run {
		if !r.admitSlots || r.res == nil || r.res.Err != nil || len(r.res.Claimed) == 0 {
			continue
		}
		tmpl := r.tmpl
		if tmpl == nil && r.res.Task != nil {
			tmpl = e.template(r.res.Task)
		}
		for _, c := range r.res.Claimed {
			if limit := e.batchSlotLimit(tmpl, c.Step); limit > 0 {
				g := group{class: c.Step.HandlerClass, owner: r.p.Claim.Owner, limit: limit}
				groups[g] = append(groups[g], c)
			}
		}
	}
	if len(groups) == 0 {
		return nil
	}
	order := slices.SortedFunc(maps.Keys(groups), func(a, b group) int {
		return cmp.Or(strings.Compare(a.class, b.class), strings.Compare(a.owner, b.owner), cmp.Compare(a.limit, b.limit))
	})
	decided := map[int64]slotDecision{}
	for _, g := range order {
		cs := groups[g]
		ids := make([]int64, len(cs))
		for i, c := range cs {
			ids[i] = c.Step.ID
		}
		res, err := tx.HandlerAdmit(ctx, &store.HandlerAdmitParams{Class: g.class, Limit: g.limit, Owner: g.owner,
			StepIDs: ids})
		if err != nil {
			return fmt.Errorf("handler class %s: admit %d claimed steps: %w", g.class, len(ids), err)
		}
		for _, c := range cs {
			d := slotDecision{attempt: c.Step.Attempts}
			if !res.Granted[c.Step.ID] {
				d.refusal = &slotRefusal{class: g.class, limit: g.limit, running: res.Running}
			}
			decided[c.Step.ID] = d
		}
	}
	for _, r := range run {
		if !r.admitSlots || r.res == nil {
			continue
		}
		for _, c := range r.res.Claimed {
			if d, ok := decided[c.Step.ID]; ok {
				if r.slots == nil {
					r.slots = map[int64]slotDecision{}
				}
				r.slots[c.Step.ID] = d
			}
		}
	}
	return nil
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

// slotClaimed settles the slots of the steps of an external worker's claim
// whose class is limited: the admissions made in the claim's transaction,
// and for the other steps one admission per class now; it records the
// steps refused one as throttled, and returns the steps left for the
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
	refuse := func(i int, no *slotRefusal) {
		drop[i] = true
		settled = append(settled, attemptResult{claimed: claimed[i], throttle: e.slotThrottle(no)})
	}
	for _, class := range classes {
		idx := byClass[class]
		limit := e.cfg.Templates.HandlerLimit(class)
		// Admitted in the claim's transaction, or asked for now.
		var ask []int
		var ids []int64
		for _, i := range idx {
			no, decided := e.slots.decision(claimed[i].Step)
			switch {
			case !decided:
				ask, ids = append(ask, i), append(ids, claimed[i].Step.ID)
			case no != nil:
				refuse(i, no)
			}
		}
		if len(ask) == 0 {
			continue
		}
		res, err := e.slots.take(ctx, class, limit, owner, ids)
		for _, i := range ask {
			switch {
			case err != nil:
				refuse(i, &slotRefusal{class: class, limit: limit, running: -1})
			case !res.Granted[claimed[i].Step.ID]:
				refuse(i, &slotRefusal{class: class, limit: limit, running: res.Running})
			}
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
