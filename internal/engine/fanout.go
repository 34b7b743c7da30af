package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/tasker-systems/tasker/internal/condition"
	"github.com/tasker-systems/tasker/internal/statemachine"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/taskertype"
)

// Dynamic fan-out. A step whose template has fan_out is a placeholder that
// the engine, not a handler, runs, in two phases, each time it is claimed
// like any step:
//
//   - expand (it has no children yet): its `when`, if any, decides first
//     (false skips it, with no children). The list at fan_out.path in the
//     result of its parent fan_out.over becomes one child step per item,
//     NAME[0] .. NAME[n-1], with the placeholder's handler, configuration,
//     retries and timeout and the inputs {"item": ..., "index": i} (over
//     the placeholder's own inputs when they are an object). The children,
//     their edges (the placeholder's parents -> each child -> the
//     placeholder) and the placeholder's move back to pending (event
//     expand, attempt given back) are one transaction (store.StepFanOut):
//     a crash leaves nothing or everything, and a placeholder no longer
//     held is not expanded. The placeholder now waits for its children like
//     any step for its parents. An empty list completes it with [] at
//     once; a missing path, a value that is not a list, or more than
//     max_items items fail it permanently, naming the step and the path.
//   - collect (its children are among its parents): it completes with the
//     children's results as a list in item order (null for a child
//     resolved by an operator without results), which its dependents
//     receive as its result.
//
// The children are ordinary steps: claimed max_parallel_steps at a time
// with the task's others, retried by the placeholder's retry settings, and
// a child failing for good fails the task like any step. The Go
// coordinator runs both phases in the placeholder's attempt (execute); the
// pull API runs them before handing steps to a worker (settleFanOuts).

// fanOutKind says what the engine made of a claimed placeholder.
type fanOutKind int

const (
	// fanOutCompleted: complete it with results (collected, or an empty list).
	fanOutCompleted fanOutKind = iota
	// fanOutFailed: fail it (err).
	fanOutFailed
	// fanOutSkipped: its `when` is false.
	fanOutSkipped
	// fanOutExpanded: the expansion committed (or the step was no longer
	// held): nothing is left to record.
	fanOutExpanded
)

// fanOutOutcome is the engine's work on a claimed placeholder.
type fanOutOutcome struct {
	kind     fanOutKind
	results  json.RawMessage
	err      error
	children int
}

// fanOut runs a claimed placeholder (fo its fan_out, cond its `when`, nil
// when none) for owner: expand or collect, see above. Only an error of the
// store is returned; everything about the step is in the outcome.
func (e *Engine) fanOut(ctx context.Context, owner string, task *taskertype.Task, fo *template.FanOut,
	cond *condition.Condition, c *store.ClaimedStep) (fanOutOutcome, error) {
	st := c.Step
	if n := fanOutChildren(st.Name, c.DependencyResults); n > 0 {
		return collectFanOut(st.Name, n, c.DependencyResults)
	}
	if run, err := conditionHolds(cond, task, c); err != nil {
		return fanOutOutcome{kind: fanOutFailed, err: err}, nil
	} else if !run {
		return fanOutOutcome{kind: fanOutSkipped}, nil
	}
	items, err := fanOutItems(st.Name, fo, c.DependencyResults[fo.Over])
	if err != nil {
		return fanOutOutcome{kind: fanOutFailed, err: taskertype.Permanent(err)}, nil
	}
	if len(items) == 0 {
		return fanOutOutcome{kind: fanOutCompleted, results: json.RawMessage(`[]`)}, nil
	}
	children, err := fanOutSpecs(st, items)
	if err != nil {
		return fanOutOutcome{kind: fanOutFailed, err: taskertype.Permanent(err)}, nil
	}
	p := &store.StepFanOutParams{TaskID: task.ID, StepID: st.ID, Owner: owner, Attempt: st.Attempts, Children: children,
		Event: string(statemachine.StepEventExpand), Actor: owner, Now: e.now(),
		Reason: fmt.Sprintf("fanned out over %d items of %s", len(items), fanOutSource(fo))}
	var res *store.StepFanOutResult
	err = e.retryDB(context.WithoutCancel(ctx), "fan out "+st.Name, e.cfg.StepLease, func() (err error) {
		res, err = e.store.StepFanOut(context.WithoutCancel(ctx), p)
		return err
	})
	if err != nil {
		return fanOutOutcome{}, err
	}
	if !res.Applied {
		e.log.Warn("fan-out not expanded: step no longer held", "task_id", task.ID, "step", st.Name, "owner", owner)
		return fanOutOutcome{kind: fanOutExpanded}, nil
	}
	e.bus.Publish(taskertype.Event{Kind: taskertype.EventStepExpanded, TaskID: task.ID, StepID: st.ID, StepName: st.Name,
		Time: p.Now, Data: map[string]any{"items": len(items), "reason": p.Reason, "handler_class": st.HandlerClass}})
	return fanOutOutcome{kind: fanOutExpanded, children: len(items)}, nil
}

// fanOutSource describes where a fan-out's items come from.
func fanOutSource(fo *template.FanOut) string {
	if fo.Path == "" {
		return "the result of " + fo.Over
	}
	return fo.Path + " in the result of " + fo.Over
}

// fanOutChildren counts the children of placeholder name among a claimed
// step's parents (0: not expanded yet).
func fanOutChildren(name string, deps map[string]json.RawMessage) int {
	n := 0
	for k := range deps {
		if p, _, ok := template.FanOutParent(k); ok && p == name {
			n++
		}
	}
	return n
}

// collectFanOut is the placeholder's result: its n children's results in
// item order.
func collectFanOut(name string, n int, deps map[string]json.RawMessage) (fanOutOutcome, error) {
	var b bytes.Buffer
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		r, ok := deps[template.FanOutChild(name, i)]
		if !ok {
			err := fmt.Errorf("fan-out %s: item %d of %d has no step %s", name, i, n, template.FanOutChild(name, i))
			return fanOutOutcome{kind: fanOutFailed, err: taskertype.Permanent(err)}, nil
		}
		if len(r) == 0 {
			r = json.RawMessage(`null`)
		}
		b.Write(r)
	}
	b.WriteByte(']')
	out := json.RawMessage(b.Bytes())
	if err := storableResults(out); err != nil {
		return fanOutOutcome{kind: fanOutFailed, err: err}, nil
	}
	return fanOutOutcome{kind: fanOutCompleted, results: out}, nil
}

// fanOutItems reads the list a placeholder fans out over from its parent's
// result, checked against max_items.
func fanOutItems(step string, fo *template.FanOut, parent json.RawMessage) ([]json.RawMessage, error) {
	v := parent
	for i, seg := range fo.PathSegments() {
		at := strings.Join(fo.PathSegments()[:i+1], ".")
		var obj map[string]json.RawMessage
		var arr []json.RawMessage
		switch {
		case json.Unmarshal(v, &obj) == nil && obj != nil:
			next, ok := obj[seg]
			if !ok {
				return nil, fmt.Errorf("step %s fans out over %s, but the result of %s has no %s",
					step, fanOutSource(fo), fo.Over, at)
			}
			v = next
		case json.Unmarshal(v, &arr) == nil && arr != nil:
			idx, err := strconv.Atoi(seg)
			if err != nil || idx < 0 || idx >= len(arr) {
				return nil, fmt.Errorf("step %s fans out over %s, but %s is a list of %d, with no index %s",
					step, fanOutSource(fo), strings.Join(fo.PathSegments()[:i], "."), len(arr), seg)
			}
			v = arr[idx]
		default:
			return nil, fmt.Errorf("step %s fans out over %s, but the value before %s is %s, not an object",
				step, fanOutSource(fo), at, jsonKind(v))
		}
	}
	var items []json.RawMessage
	if err := json.Unmarshal(v, &items); err != nil || items == nil {
		return nil, fmt.Errorf("step %s fans out over %s, which is %s, not a list", step, fanOutSource(fo), jsonKind(v))
	}
	if len(items) > fo.MaxItems {
		return nil, fmt.Errorf("step %s fans out over %s: %d items, more than its max_items %d",
			step, fanOutSource(fo), len(items), fo.MaxItems)
	}
	return items, nil
}

// jsonKind names the JSON type of a value.
func jsonKind(v json.RawMessage) string {
	t := bytes.TrimSpace(v)
	if len(t) == 0 {
		return "missing"
	}
	switch t[0] {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case '"':
		return "a string"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// fanOutSpecs are the children of placeholder st, one per item.
func fanOutSpecs(st *taskertype.Step, items []json.RawMessage) ([]store.StepSpec, error) {
	var base map[string]json.RawMessage
	if len(st.Inputs) > 0 {
		_ = json.Unmarshal(st.Inputs, &base) // not an object: the children get item and index only
	}
	specs := make([]store.StepSpec, len(items))
	for i, item := range items {
		in := make(map[string]json.RawMessage, len(base)+2)
		for k, v := range base {
			in[k] = v
		}
		in["item"], in["index"] = item, json.RawMessage(strconv.Itoa(i))
		raw, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("fan-out %s: inputs of item %d: %w", st.Name, i, err)
		}
		specs[i] = store.StepSpec{Name: template.FanOutChild(st.Name, i), HandlerClass: st.HandlerClass,
			HandlerConfig: st.HandlerConfig, Retryable: st.Retryable, MaxAttempts: st.MaxAttempts,
			TimeoutSeconds: st.TimeoutSeconds, Skippable: st.Skippable, Inputs: raw}
	}
	return specs, nil
}

// runFanOut is an attempt of a placeholder held by owner (the coordinator's
// in execute, a worker's in settleFanOuts): the outcome goes on r like a
// handler's.
func (e *Engine) runFanOut(ctx context.Context, owner string, task *taskertype.Task, fo *template.FanOut,
	cond *condition.Condition, c *store.ClaimedStep, r *attemptResult) {
	out, err := e.fanOut(ctx, owner, task, fo, cond, c)
	if err != nil {
		r.err = err // the store failed: a retryable failure of the attempt
		return
	}
	switch out.kind {
	case fanOutCompleted:
		r.results = out.results
	case fanOutFailed:
		r.err = out.err
	case fanOutSkipped:
		r.skipped = true
	case fanOutExpanded:
		r.expanded = true
	}
}

// settleFanOuts runs, for an external worker's claim, the placeholders
// among claimed (expanding or collecting them, recording their outcomes)
// and returns the steps left for the worker and whether any placeholder
// was settled (more steps may be ready now).
func (e *Engine) settleFanOuts(ctx context.Context, owner string, task *taskertype.Task,
	claimed []*store.ClaimedStep) ([]*store.ClaimedStep, bool, error) {
	tmpl := e.template(task)
	if tmpl == nil {
		return claimed, false, nil
	}
	var settled []attemptResult
	run := claimed[:0:0]
	for _, c := range claimed {
		fo := tmpl.FanOut(c.Step.Name)
		if fo == nil {
			run = append(run, c)
			continue
		}
		r := attemptResult{claimed: c}
		e.runFanOut(ctx, owner, task, fo, tmpl.Condition(c.Step.Name), c, &r)
		settled = append(settled, r)
	}
	if len(settled) == 0 {
		return claimed, false, nil
	}
	if _, _, err := e.recordAs(context.WithoutCancel(ctx), owner, task, settled, false, false); err != nil {
		return nil, false, err
	}
	return run, true, nil
}

// fanOutOf is a claimed step's fan_out in tmpl (nil: none, or no template).
func fanOutOf(tmpl *template.Template, step string) *template.FanOut {
	if tmpl == nil {
		return nil
	}
	return tmpl.FanOut(step)
}

// withoutExpanded drops the results of placeholders that were expanded:
// their expansion already moved them (there is nothing to record).
func withoutExpanded(batch []attemptResult) []attemptResult {
	n := 0
	for _, r := range batch {
		if !r.expanded {
			n++
		}
	}
	if n == len(batch) {
		return batch
	}
	out := make([]attemptResult, 0, n)
	for _, r := range batch {
		if !r.expanded {
			out = append(out, r)
		}
	}
	return out
}

// unlockedBy is what a finished attempt unlocks, for the coordinator's
// claims: an expansion made unknown steps (the children) ready; a child of
// a fan-out may have been its placeholder's last unfinished parent;
// otherwise the template's children (completed).
func (u *unlockTracker) unlockedBy(r attemptResult) unlockSet {
	if r.expanded {
		return unlockSet{unknown: true}
	}
	if p := u.fanOutPlaceholder(r.claimed.Step.Name); p != "" {
		return unlockSet{names: []string{p}}
	}
	return u.completed(r.claimed.Step.Name)
}

// fanOutPlaceholder returns the placeholder of a fan-out child name ("" for
// any other step, and always when the template is not loaded: then every
// completion is taken as unlocking something unknown).
func (u *unlockTracker) fanOutPlaceholder(step string) string {
	if u == nil {
		return ""
	}
	if p, _, ok := template.FanOutParent(step); ok && u.fanOuts[p] {
		return p
	}
	return ""
}

// fanOutNames is the set of tmpl's fan-out steps.
func fanOutNames(tmpl *template.Template) map[string]bool {
	var out map[string]bool
	for _, st := range tmpl.Steps {
		if st.FanOut != nil {
			if out == nil {
				out = map[string]bool{}
			}
			out[st.Name] = true
		}
	}
	return out
}

// fanOutClaimRounds bounds the claims one pull-API call makes after
// settling placeholders (an expansion's children, a collection's
// dependents, which may be placeholders in turn).
const fanOutClaimRounds = 4

// claimPastFanOuts settles the placeholders among an external worker's
// claimed steps (settleFanOuts) and, while that made room and may have
// made steps ready, claims again for the room: a worker is handed the
// expansion's children in the same call. limit is the claim's (<= 0: the
// task's max_parallel_steps).
func (e *Engine) claimPastFanOuts(ctx context.Context, owner string, task *taskertype.Task,
	claimed []*store.ClaimedStep, limit int) ([]*store.ClaimedStep, error) {
	if limit <= 0 {
		limit = task.MaxParallelSteps
	}
	var out []*store.ClaimedStep
	for round := 0; ; round++ {
		run, settled, err := e.settleFanOuts(ctx, owner, task, claimed)
		if err != nil {
			return nil, err
		}
		out = append(out, run...)
		room := limit - len(out)
		if !settled || room <= 0 || round == fanOutClaimRounds {
			return out, nil
		}
		claimed, err = e.store.StepClaim(context.WithoutCancel(ctx),
			e.leased(&store.StepClaimParams{TaskID: task.ID, Owner: owner, Limit: room}))
		if err != nil {
			return nil, err
		}
		if len(claimed) == 0 {
			return out, nil
		}
	}
}

// explainFanOuts adds to explain's reasons what the fan-out steps of task
// are doing: a placeholder waiting for its children says how many of them
// are still to finish (instead of listing each), one complete how many
// items it collected (both told from the children's names, with or
// without the template), and one not yet expanded what it will fan out
// over (when the template is loaded here).
func (e *Engine) explainFanOuts(task *taskertype.Task, rs []*taskertype.StepReadiness) {
	type count struct{ total, done int }
	counts := map[string]*count{}
	for _, r := range rs {
		p, _, ok := template.FanOutParent(r.Name)
		if !ok {
			continue
		}
		c := counts[p]
		if c == nil {
			c = &count{}
			counts[p] = c
		}
		c.total++
		if r.State.SatisfiesDependents() {
			c.done++
		}
	}
	tmpl := e.template(task)
	for _, r := range rs {
		waiting := r.State == taskertype.StepStatePending || r.State == taskertype.StepStateWaitingForRetry
		if c := counts[r.Name]; c != nil {
			switch {
			case r.State == taskertype.StepStateComplete:
				r.Reason = fmt.Sprintf("complete: collected the results of %d fan-out items", c.total)
			case waiting && !r.DependenciesSatisfied && !task.State.Terminal():
				r.Reason = fmt.Sprintf("waiting for %d of %d fan-out items (%s[0]..%s[%d]); then collects their results",
					c.total-c.done, c.total, r.Name, r.Name, c.total-1)
				if other := len(r.BlockingParents) - (c.total - c.done); other > 0 {
					r.Reason += fmt.Sprintf(" (and %d other parent(s))", other)
				}
			}
			continue
		}
		if fo := fanOutOf(tmpl, r.Name); fo != nil && waiting {
			r.Reason += fmt.Sprintf("; fans out over %s (at most %d items)", fanOutSource(fo), fo.MaxItems)
		}
	}
}
