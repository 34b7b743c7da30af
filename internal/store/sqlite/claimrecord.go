package sqlite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/store/sqlcore"
	"github.com/tasker-systems/tasker/taskertype"
)

// Claims and records on SQLite, and its transaction executor. The bulk
// operations of store.Tx run their calls one after another inside the one
// transaction (the database has one writer, and a statement costs no
// round trip): what a transaction of many calls saves on SQLite is the
// commits, not the statements.

// Transact implements store.Store. SQLite reports no deadlocks (one
// writer; a busy database is waited for by the driver), so fn runs once.
func (s *Store) Transact(ctx context.Context, fn func(tx store.Tx) error) error {
	return s.InTx(ctx, func(tx sqlcore.Tx) error { return fn(&liteTx{s: s, tx: tx}) })
}

// liteTx is SQLite's store.Tx.
type liteTx struct {
	s  *Store
	tx sqlcore.Tx
}

var _ store.Tx = (*liteTx)(nil)

// StepClaim implements store.Store.
func (s *Store) StepClaim(ctx context.Context, p *store.StepClaimParams) ([]*store.ClaimedStep, error) {
	var claimed []*store.ClaimedStep
	err := s.InTx(ctx, func(tx sqlcore.Tx) error {
		var err error
		claimed, err = s.claimTx(ctx, tx, p)
		return err
	})
	if err != nil {
		return nil, err
	}
	return claimed, nil
}

// TaskStartAndClaim implements store.Store: the start transition and the
// first claim share one transaction (one commit instead of two).
func (s *Store) TaskStartAndClaim(ctx context.Context, start *store.TaskTransitionParams, p *store.StepClaimParams) (*store.TransitionResult,
	*taskertype.Task, []*store.ClaimedStep, error) {
	var r *store.StartAndClaimResult
	err := s.InTx(ctx, func(tx sqlcore.Tx) error {
		var err error
		r, err = s.startAndClaimTx(ctx, tx, start, p)
		return err
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return r.Transition, r.Task, r.Claimed, nil
}

// TaskStartAndClaimMany implements store.Tx: each claim in turn; a claim
// whose task does not exist gets the error and the others go on.
func (t *liteTx) TaskStartAndClaimMany(ctx context.Context, ps []*store.StartAndClaimParams) ([]*store.StartAndClaimResult, error) {
	out := make([]*store.StartAndClaimResult, len(ps))
	for i, p := range ps {
		if p.Claim == nil {
			return nil, fmt.Errorf("claim %d: no claim parameters", i)
		}
		r, err := t.s.startAndClaimTx(ctx, t.tx, p.Start, p.Claim)
		var nf *taskertype.TaskNotFoundError
		if errors.As(err, &nf) {
			r, err = &store.StartAndClaimResult{Err: err}, nil
		}
		if err != nil {
			return nil, err
		}
		out[i] = r
	}
	return out, nil
}

// startAndClaimTx applies start (when not nil) and claims inside tx.
func (s *Store) startAndClaimTx(ctx context.Context, tx sqlcore.Tx, start *store.TaskTransitionParams,
	p *store.StepClaimParams) (*store.StartAndClaimResult, error) {
	if start == nil {
		claimed, err := s.claimTx(ctx, tx, p)
		if err != nil {
			return nil, err
		}
		return &store.StartAndClaimResult{Claimed: claimed}, nil
	}
	tr, err := s.TaskMove(ctx, tx, start)
	if err != nil {
		return nil, err
	}
	task, err := s.TaskGetIn(ctx, tx, start.TaskID)
	if err != nil {
		return nil, err
	}
	r := &store.StartAndClaimResult{Transition: tr, Task: task}
	if !tr.Changed && tr.State != start.To {
		return r, nil // the task left the start's sources: claim nothing
	}
	cp := *p
	if cp.Limit == 0 {
		cp.Limit = task.MaxParallelSteps
	}
	cp.Names = p.FirstClaimNames(tr, task)
	if r.Claimed, err = s.claimTx(ctx, tx, &cp); err != nil {
		return nil, err
	}
	return r, nil
}

// claimTx claims up to p.Limit ready steps inside tx.
// With p.Lease the claim's time is taken now, inside the transaction: this
// is SQLite's clock, this machine's, and whose transaction holds the database's one writer.
func (s *Store) claimTx(ctx context.Context, tx sqlcore.Tx, p *store.StepClaimParams) ([]*store.ClaimedStep, error) {
	now, until := sqlcore.UTC(p.Now), p.LeaseUntil
	if p.Lease > 0 {
		now = sqlcore.UTC(time.Now())
		until = now.Add(p.Lease)
	}
	var names any // NULL: any step
	if len(p.Names) > 0 {
		names = s.Strs(p.Names)
	}
	rs, err := tx.Query(ctx, s.Q("StepClaim"), p.TaskID, s.T(now), p.Owner, s.T(until), p.Limit, names)
	if err != nil {
		return nil, fmt.Errorf("claim steps: %w", err)
	}
	var claimed []*store.ClaimedStep
	withParents := map[int64]*store.ClaimedStep{}
	var trs []sqlcore.TransitionRow
	var prev string
	var seq int
	var hasParents bool
	sc := sqlcore.NewStepScanner(&prev, &seq, &hasParents)
	for rs.Next() {
		st, err := sc.Scan(rs)
		if err != nil {
			rs.Close()
			return nil, fmt.Errorf("claim steps: %w", err)
		}
		c := &store.ClaimedStep{Step: st, DependencyResults: map[string]json.RawMessage{}}
		claimed = append(claimed, c)
		if hasParents {
			withParents[st.ID] = c
		}
		trs = append(trs, sqlcore.TransitionRow{StepID: st.ID, From: prev, To: string(taskertype.StepStateInProgress),
			Event: "claim", Actor: p.Owner, Seq: seq, Meta: sqlcore.AttemptMeta(st.Attempts)})
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("claim steps: %w", err)
	}
	if len(claimed) == 0 {
		return nil, nil
	}
	if err := s.drv.AppendStepTransitions(ctx, tx, p.TaskID, trs, now); err != nil {
		return nil, err
	}
	if err := s.DependencyResults(ctx, tx, withParents); err != nil {
		return nil, err
	}
	if p.Lease > 0 {
		if err := s.RenewSlowClaim(ctx, tx, claimed, p.Lease, now); err != nil {
			return nil, err
		}
	}
	return claimed, nil
}

// StepRecord implements store.Store. Every outcome of the batch is applied
// by one UPDATE joined with the outcomes passed as one JSON document, so a
// batch costs the same few round trips whatever its size.
func (s *Store) StepRecord(ctx context.Context, p *store.StepRecordParams) ([]bool, error) {
	if len(p.Outcomes) == 0 {
		return make([]bool, 0), nil
	}
	var applied []bool
	err := s.InTx(ctx, func(tx sqlcore.Tx) error {
		var err error
		applied, err = s.stepRecordTx(ctx, tx, p)
		return err
	})
	if err != nil {
		return nil, err
	}
	return applied, nil
}

// StepRecordMany implements store.Tx: each record in turn. ps.Lock needs
// no lock on SQLite: a transaction that writes holds the database's one
// writer until it ends.
func (t *liteTx) StepRecordMany(ctx context.Context, ps *store.StepRecordManyParams) ([][]bool, error) {
	out := make([][]bool, len(ps.Records))
	for i, p := range ps.Records {
		applied, err := t.s.stepRecordTx(ctx, t.tx, p)
		if err != nil {
			return nil, err
		}
		out[i] = applied
	}
	return out, nil
}

// TaskSummaries implements store.Tx.
func (t *liteTx) TaskSummaries(ctx context.Context, taskIDs []int64, nows []time.Time) (map[int64]*store.TaskSummary, error) {
	if len(taskIDs) != len(nows) {
		return nil, fmt.Errorf("summarize tasks: %d task ids, %d times", len(taskIDs), len(nows))
	}
	out := make(map[int64]*store.TaskSummary, len(taskIDs))
	for i, id := range taskIDs {
		sum, err := t.s.Summary(ctx, t.tx, id, nows[i])
		if err != nil {
			return nil, err
		}
		out[id] = sum
	}
	return out, nil
}

// TaskTransitionMany implements store.Tx: each transition in turn.
func (t *liteTx) TaskTransitionMany(ctx context.Context, ps []*store.TaskTransitionParams) ([]*store.TransitionResult, []error,
	error) {
	results, errs := make([]*store.TransitionResult, len(ps)), make([]error, len(ps))
	for i, p := range ps {
		tr, err := t.s.TaskMove(ctx, t.tx, p)
		var nf *taskertype.TaskNotFoundError
		if errors.As(err, &nf) {
			errs[i] = err
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		results[i] = tr
	}
	return results, errs, nil
}

// stepRecordTx applies p's outcomes inside tx; applied[i] reports outcome i.
func (s *Store) stepRecordTx(ctx context.Context, tx sqlcore.Tx, p *store.StepRecordParams) ([]bool, error) {
	now := sqlcore.UTC(p.Now)
	applied := make([]bool, len(p.Outcomes))
	if len(p.Outcomes) == 0 {
		return applied, nil
	}
	if err := sqlcore.CheckOutcomes(p); err != nil {
		return nil, err
	}
	docs := make([]recordDoc, len(p.Outcomes))
	index := make(map[int64]int, len(p.Outcomes))
	for i, o := range p.Outcomes {
		d := recordDoc{StepID: o.StepID, State: string(o.To), Results: o.Results, Error: o.Error,
			NextRetryAt: s.TP(o.NextRetryAt), Backoff: o.BackoffRequestSeconds, Attempt: o.Attempt}
		if o.GiveBackAttempt {
			d.GiveBack = 1
		}
		if o.To == taskertype.StepStateComplete && o.Attempt > 0 && !o.GiveBackAttempt {
			d.LateOK = 1
		}
		if o.To == taskertype.StepStateComplete || o.To == taskertype.StepStateError || o.To == taskertype.StepStateSkipped {
			d.CompletedAt = s.T(now)
		}
		docs[i] = d
		index[o.StepID] = i
	}
	doc, err := json.Marshal(docs)
	if err != nil {
		return nil, fmt.Errorf("record steps of task %d: %w", p.TaskID, err)
	}
	if err := s.recordTx(ctx, tx, p, string(doc), docs, index, applied, now); err != nil {
		return nil, err
	}
	return applied, nil
}

// recordTx applies a batch of outcomes inside tx (the RecordSteps query) and
// appends the moved steps' transitions; applied[i] reports outcome i.
func (s *Store) recordTx(ctx context.Context, tx sqlcore.Tx, p *store.StepRecordParams, doc string, docs []recordDoc,
	index map[int64]int, applied []bool, now time.Time) error {
	rs, err := tx.Query(ctx, s.Q("RecordSteps"), doc, s.T(now), p.Owner)
	if err != nil {
		return fmt.Errorf("record steps: %w", err)
	}
	var trs []sqlcore.TransitionRow
	for rs.Next() {
		var id int64
		var prev string
		var seq, attempts int
		if err := rs.Scan(&id, &prev, &seq, &attempts); err != nil {
			rs.Close()
			return fmt.Errorf("record steps: %w", err)
		}
		i, ok := index[id]
		if !ok {
			continue
		}
		o := p.Outcomes[i]
		applied[i] = true
		meta := map[string]any{"attempt": attempts + docs[i].GiveBack}
		if len(o.Error) > 0 {
			meta["error"] = json.RawMessage(o.Error)
		}
		if o.NextRetryAt != nil {
			meta["next_retry_at"] = o.NextRetryAt.UTC()
		}
		mj, _ := json.Marshal(meta)
		trs = append(trs, sqlcore.TransitionRow{StepID: o.StepID, From: prev, To: string(o.To), Event: o.Event,
			Reason: o.Reason, Actor: p.Owner, Seq: seq, Meta: mj})
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return fmt.Errorf("record steps: %w", err)
	}
	if len(trs) == 0 {
		return nil
	}
	// Transitions in the order of the outcomes, as before batching.
	slices.SortFunc(trs, func(a, b sqlcore.TransitionRow) int { return index[a.StepID] - index[b.StepID] })
	return s.drv.AppendStepTransitions(ctx, tx, p.TaskID, trs, now)
}

// recordDoc is one outcome in the JSON document RecordSteps reads.
type recordDoc struct {
	StepID      int64           `json:"step_id"`
	State       string          `json:"state"`
	Results     json.RawMessage `json:"results,omitempty"`
	Error       json.RawMessage `json:"error,omitempty"`
	NextRetryAt any             `json:"next_retry_at,omitempty"`
	Backoff     *int            `json:"backoff,omitempty"`
	GiveBack    int             `json:"give_back"`
	CompletedAt any             `json:"completed_at,omitempty"`
	Attempt     int             `json:"attempt"`
	LateOK      int             `json:"late_ok"`
}

// StepLeaseExtend implements store.Store: the new end is this machine's
// clock (SQLite's) plus lease.
func (s *Store) StepLeaseExtend(ctx context.Context, owner string, stepIDs []int64, lease time.Duration) (int, time.Time, error) {
	until := sqlcore.UTC(time.Now().Add(lease))
	if len(stepIDs) == 0 {
		return 0, until, nil
	}
	n, err := s.DB().Exec(ctx, s.Q("StepLeaseExtend"), owner, s.T(until), s.IDs(stepIDs))
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("extend step leases: %w", err)
	}
	return int(n), until, nil
}

// ConcurrencyLockMany implements store.Tx (sqlcore.Core.ConcurrencyLockMany).
func (t *liteTx) ConcurrencyLockMany(ctx context.Context, taskIDs []int64) (*store.ConcurrencyLocked, error) {
	return t.s.Core.ConcurrencyLockMany(ctx, t.tx, taskIDs)
}

// HandlerAdmit implements store.Tx (sqlcore.Core.HandlerAdmitIn).
func (t *liteTx) HandlerAdmit(ctx context.Context, p *store.HandlerAdmitParams) (*store.HandlerAdmitResult, error) {
	return t.s.Core.HandlerAdmitIn(ctx, t.tx, p)
}
