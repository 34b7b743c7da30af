package engine

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/taskertype"
)

// The engine's batched store calls (see batcher.go): records of attempt
// outcomes with or without the TaskFinalizer, and claims with or without
// the task's start. The store stores (store.Tx); the engine decides, in
// execRecords, between the statements of the transaction.

// recordReq is one record of attempt outcomes, with the finalizer when
// task is set.
type recordReq struct {
	batchCall
	p *store.StepRecordParams
	// task is the task to finalize (nil: record only); its verdict is
	// judged as actor p.Owner from the summary taken in the same
	// transaction, after the outcomes.
	task *taskertype.Task

	applied []bool
	v       verdict
	tr      *store.TransitionResult
}

// claimReq is one claim, after the task's start when p.Start is set.
type claimReq struct {
	batchCall
	p   store.StartAndClaimParams
	res *store.StartAndClaimResult
	// admit: the task may have a concurrency key, admitted in the batch
	// (admitInBatch); held: it has one, at its limit, and was neither
	// started nor claimed from (res is empty).
	admit, held bool
	// admitSlots: the claimed steps of limited handler classes take their
	// slots in the batch (admitSlotsInBatch), decided in slots; tmpl is
	// the task's template when known (else read from res.Task).
	admitSlots bool
	tmpl       *template.Template
	slots      map[int64]slotDecision
}

// newBatchers sets up the engine's record and claim batchers.
func (e *Engine) newBatchers() {
	e.records = newBatcher(e.store, e.execRecords)
	e.claims = newBatcher(e.store, e.execClaims)
}

// stepRecord applies p's outcomes (a batch of one task's attempts) in the
// next record batch; applied[i] reports outcome i (see store.Store.StepRecord).
func (e *Engine) stepRecord(ctx context.Context, p *store.StepRecordParams) ([]bool, error) {
	if len(p.Outcomes) == 0 {
		return make([]bool, 0), nil
	}
	r := &recordReq{p: p}
	if err := e.records.do(ctx, r); err != nil {
		return nil, err
	}
	return r.applied, nil
}

// stepRecordFinalize is stepRecord followed, in the same transaction, by
// the TaskFinalizer's verdict on task (as actor p.Owner) and its
// transition; tr is the transition's result (nil when the verdict needs
// none).
func (e *Engine) stepRecordFinalize(ctx context.Context, p *store.StepRecordParams, task *taskertype.Task) ([]bool, verdict,
	*store.TransitionResult, error) {
	r := &recordReq{p: p, task: task}
	if err := e.records.do(ctx, r); err != nil {
		return nil, verdict{}, nil, err
	}
	return r.applied, r.v, r.tr, nil
}

// execRecords is the record batch: every outcome in one statement (which
// locks the tasks to finalize), the summaries of the tasks to finalize in
// one, each task's verdict, and every resulting transition in one.
func (e *Engine) execRecords(ctx context.Context, tx store.Tx, batch []*recordReq) error {
	recs := make([]*store.StepRecordParams, len(batch))
	var fin []*recordReq // the tasks to finalize, each once
	seen := map[int64]bool{}
	for i, r := range batch {
		r.applied, r.v, r.tr, r.err = nil, verdict{}, nil, nil
		recs[i] = r.p
		if r.task != nil && !seen[r.p.TaskID] {
			seen[r.p.TaskID] = true
			fin = append(fin, r)
		}
	}
	slices.SortFunc(fin, func(a, b *recordReq) int { return cmp.Compare(a.p.TaskID, b.p.TaskID) })
	ids := make([]int64, len(fin))
	nows := make([]time.Time, len(fin))
	for i, r := range fin {
		ids[i], nows[i] = r.p.TaskID, r.p.Now
	}
	applied, err := tx.StepRecordMany(ctx, &store.StepRecordManyParams{Records: recs, Lock: ids})
	if err != nil {
		return err
	}
	for i, r := range batch {
		r.applied = applied[i]
	}
	if len(fin) == 0 {
		return nil
	}
	sums, err := tx.TaskSummaries(ctx, ids, nows)
	if err != nil {
		return err
	}
	var moves []*store.TaskTransitionParams
	var movers []*recordReq
	for _, r := range batch {
		if r.task == nil {
			continue
		}
		sum := sums[r.p.TaskID]
		if sum == nil {
			sum = &store.TaskSummary{}
		}
		r.v = e.judge(r.task, sum, r.p.Owner)
		if tp := r.v.transition(); tp != nil {
			moves, movers = append(moves, tp), append(movers, r)
		}
	}
	if len(moves) == 0 {
		return nil
	}
	results, errs, err := tx.TaskTransitionMany(ctx, moves)
	if err != nil {
		return err
	}
	for i, r := range movers {
		r.tr, r.err = results[i], errs[i]
	}
	return nil
}

// stepClaim claims steps in the next claim batch (see store.Store.StepClaim)
// for the coordinator of a task of template tmpl (nil: not loaded); the
// steps of limited handler classes take their slots in the batch.
func (e *Engine) stepClaim(ctx context.Context, p *store.StepClaimParams, tmpl *template.Template) ([]*store.ClaimedStep,
	error) {
	r := &claimReq{p: store.StartAndClaimParams{Claim: p}, admitSlots: e.cfg.Templates.HasHandlerLimits(), tmpl: tmpl}
	if err := e.claims.do(ctx, r); err != nil {
		return nil, err
	}
	e.slots.remember(r.slots)
	return r.res.Claimed, nil
}

// execClaims is the claim batch: the admission of the tasks with a
// concurrency key when some template declares one (admitInBatch), then one
// TaskStartAndClaimMany for every request not held back, then the slots of
// the claimed steps of limited handler classes (admitSlotsInBatch).
func (e *Engine) execClaims(ctx context.Context, tx store.Tx, batch []*claimReq) error {
	for _, r := range batch {
		r.res, r.err, r.held, r.slots = nil, nil, false, nil
	}
	starts, err := e.admitInBatch(ctx, tx, batch)
	if err != nil {
		return err
	}
	ps := make([]*store.StartAndClaimParams, 0, len(batch))
	run := make([]*claimReq, 0, len(batch))
	for i, r := range batch {
		if r.held {
			r.res = &store.StartAndClaimResult{}
			continue
		}
		p := &r.p
		if starts != nil && starts[i] != nil {
			p = &store.StartAndClaimParams{Start: starts[i], Claim: r.p.Claim}
		}
		ps, run = append(ps, p), append(run, r)
	}
	if len(ps) == 0 {
		return nil
	}
	rs, err := tx.TaskStartAndClaimMany(ctx, ps)
	if err != nil {
		return err
	}
	for i, r := range run {
		r.res, r.err = rs[i], rs[i].Err
	}
	return e.admitSlotsInBatch(ctx, tx, run)
}
