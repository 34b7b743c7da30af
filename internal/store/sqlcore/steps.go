package sqlcore

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/taskertype"
)

// StepScanner reads rows of stepCols (then the extra columns) into steps.
// One scanner serves every row of a query: its destination list and
// scratch values are made once, not once per row (a claim reads
// thousands of rows).
type StepScanner struct {
	st                                            taskertype.Step
	state                                         string
	cfg, inputs, results, errDoc                  []byte
	backoff                                       *int
	lastAt, nextAt, leaseAt, created, updated, at ScanTime
	dest                                          []any
}

// NewStepScanner returns a scanner of the step columns, then extra.
func NewStepScanner(extra ...any) *StepScanner {
	s := &StepScanner{}
	st := &s.st
	s.dest = append(make([]any, 0, 22+len(extra)), &st.ID, &st.TaskID, &st.Name, &st.HandlerClass, &s.cfg, &s.state,
		&st.Retryable, &st.Attempts, &st.MaxAttempts, &st.TimeoutSeconds, &st.Skippable, &s.inputs, &s.results,
		&s.errDoc, &s.backoff, &s.lastAt, &s.nextAt, &st.LeaseOwner, &s.leaseAt, &s.created, &s.updated, &s.at)
	s.dest = append(s.dest, extra...)
	return s
}

// Scan reads one row into a new step. The drivers copy []byte and
// allocate strings per row; the backoff pointer is cleared so that a
// driver allocates it afresh rather than writing through last row's.
func (s *StepScanner) Scan(r Row) (*taskertype.Step, error) {
	s.backoff = nil
	if err := r.Scan(s.dest...); err != nil {
		return nil, err
	}
	st := s.st
	st.State = taskertype.StepState(s.state)
	st.HandlerConfig, st.Inputs, st.Results, st.Error = s.cfg, s.inputs, s.results, s.errDoc
	st.BackoffRequestSeconds = s.backoff
	st.LastAttemptedAt, st.NextRetryAt, st.LeaseExpiresAt = s.lastAt.Ptr(), s.nextAt.Ptr(), s.leaseAt.Ptr()
	st.CreatedAt, st.UpdatedAt, st.CompletedAt = s.created.T, s.updated.T, s.at.Ptr()
	return &st, nil
}

// querySteps runs q (selecting stepCols) and reads the steps it returns.
func (s *Core) querySteps(ctx context.Context, q string, args ...any) ([]*taskertype.Step, error) {
	rs, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []*taskertype.Step
	sc := NewStepScanner()
	for rs.Next() {
		st, err := sc.Scan(rs)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, rs.Err()
}

// StepList implements store.Store.
func (s *Core) StepList(ctx context.Context, taskID int64) ([]*taskertype.Step, error) {
	out, err := s.querySteps(ctx, s.Q("StepList"), taskID)
	if err != nil {
		return nil, fmt.Errorf("list steps of task %d: %w", taskID, err)
	}
	byID := make(map[int64]*taskertype.Step, len(out))
	for _, st := range out {
		byID[st.ID] = st
	}
	err = s.eachParent(ctx, taskID, func(child int64, parent string, _ taskertype.StepState) {
		if st := byID[child]; st != nil {
			st.Parents = append(st.Parents, parent)
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// StepsByID implements store.Store.
func (s *Core) StepsByID(ctx context.Context, taskID int64, ids []int64) ([]*taskertype.Step, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	out, err := s.querySteps(ctx, s.Q("StepsByID"), taskID, s.IDs(ids))
	if err != nil {
		return nil, fmt.Errorf("steps of task %d: %w", taskID, err)
	}
	return out, nil
}

func (s *Core) eachParent(ctx context.Context, taskID int64, fn func(child int64, parent string, state taskertype.StepState)) error {
	rs, err := s.db.Query(ctx, s.Q("StepParents"), taskID)
	if err != nil {
		return fmt.Errorf("edges of task %d: %w", taskID, err)
	}
	defer rs.Close()
	for rs.Next() {
		var child int64
		var name, state string
		if err := rs.Scan(&child, &name, &state); err != nil {
			return fmt.Errorf("edges of task %d: %w", taskID, err)
		}
		fn(child, name, taskertype.StepState(state))
	}
	return rs.Err()
}

// StepReadiness implements store.Store.
func (s *Core) StepReadiness(ctx context.Context, taskID int64, now time.Time) ([]*taskertype.StepReadiness, error) {
	rs, err := s.db.Query(ctx, s.Q("StepReadiness"), taskID, s.T(now))
	if err != nil {
		return nil, fmt.Errorf("step readiness of task %d: %w", taskID, err)
	}
	var out []*taskertype.StepReadiness
	byID := map[int64]*taskertype.StepReadiness{}
	for rs.Next() {
		var r taskertype.StepReadiness
		var state string
		var next, lease ScanTime
		var eligible, expired, ready int
		if err := rs.Scan(&r.StepID, &r.Name, &state, &r.Attempts, &r.MaxAttempts, &r.Retryable, &next,
			&r.LeaseOwner, &lease, &r.TotalParents, &r.CompletedParents, &eligible, &expired, &ready); err != nil {
			rs.Close()
			return nil, fmt.Errorf("step readiness of task %d: %w", taskID, err)
		}
		r.State = taskertype.StepState(state)
		r.NextRetryAt, r.LeaseExpiresAt = next.Ptr(), lease.Ptr()
		r.DependenciesSatisfied = r.TotalParents == r.CompletedParents
		r.RetryEligible, r.BackoffExpired, r.Ready = eligible == 1, expired == 1, ready == 1
		out = append(out, &r)
		byID[r.StepID] = &r
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("step readiness of task %d: %w", taskID, err)
	}
	err = s.eachParent(ctx, taskID, func(child int64, parent string, state taskertype.StepState) {
		if r := byID[child]; r != nil && !state.SatisfiesDependents() {
			r.BlockingParents = append(r.BlockingParents, parent)
		}
	})
	return out, err
}

// RenewSlowClaim restarts the leases of claimed steps from the database's
// clock now when the claim's transaction has run for more than a tenth of
// the lease since began: the lease was granted when the claim statement
// started, and a claim of many steps on a loaded server (the statement, then
// their parents' results) can spend much of it before the coordinator even
// sees the steps (fault injection: a 600-step claim that took two seconds
// lost its 2 s leases to the rescuer). The rows are this transaction's,
// so the update waits for no one; a quick claim skips it.
func (s *Core) RenewSlowClaim(ctx context.Context, tx Tx, claimed []*store.ClaimedStep, lease time.Duration,
	began time.Time) error {
	if time.Since(began) <= lease/10 {
		return nil
	}
	ids := make([]int64, len(claimed))
	for i, c := range claimed {
		ids[i] = c.Step.ID
	}
	until, err := s.d.RenewLeases(ctx, tx, ids, lease)
	if err != nil {
		return fmt.Errorf("renew claimed leases: %w", err)
	}
	for _, c := range claimed {
		c.Step.LeaseExpiresAt = &until
	}
	return nil
}

// DependencyResults reads the results of the parents of the claimed steps
// in withParents (the claimed steps that have parents, by id) into their
// DependencyResults and Parents. Edges are written with the task (and by a
// fan-out's expansion, in the transaction that releases its placeholder,
// so never under a claim), so steps without parents need no read.
func (s *Core) DependencyResults(ctx context.Context, tx Tx, withParents map[int64]*store.ClaimedStep) error {
	if len(withParents) == 0 {
		return nil
	}
	ids := slices.Collect(maps.Keys(withParents))
	rs, err := tx.Query(ctx, s.Q("DependencyResults"), s.IDs(ids))
	if err != nil {
		return fmt.Errorf("dependency results: %w", err)
	}
	defer rs.Close()
	type edge struct{ child, parent int64 }
	type parent struct {
		name    string
		results []byte
	}
	var edges []edge
	parents := map[int64]parent{}
	for rs.Next() {
		var e edge
		var p parent
		if err := rs.Scan(&e.child, &e.parent, &p.name, &p.results); err != nil {
			return fmt.Errorf("dependency results: %w", err)
		}
		if e.child == 0 {
			if len(p.results) == 0 {
				p.results = []byte("null")
			}
			parents[e.parent] = p
		} else {
			edges = append(edges, e)
		}
	}
	if err := rs.Err(); err != nil {
		return fmt.Errorf("dependency results: %w", err)
	}
	// Parents in step id order.
	slices.SortFunc(edges, func(a, b edge) int { return cmp.Compare(a.parent, b.parent) })
	for _, e := range edges {
		p, ok := parents[e.parent]
		if !ok {
			return fmt.Errorf("dependency results: parent step %d of step %d not found", e.parent, e.child)
		}
		c := withParents[e.child]
		c.DependencyResults[p.name] = p.results
		c.Step.Parents = append(c.Step.Parents, p.name)
	}
	return nil
}

// AttemptMeta is a claim transition's metadata.
func AttemptMeta(attempt int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"attempt":%d}`, attempt))
}

// TransitionRow is one step transition to write.
type TransitionRow struct {
	StepID   int64
	From, To string
	Event    string
	Reason   string
	Actor    string
	Seq      int
	Meta     json.RawMessage
}

// StepTransition implements store.Store.
func (s *Core) StepTransition(ctx context.Context, p *store.StepTransitionParams) (*store.StepTransitionResult, error) {
	var res *store.StepTransitionResult
	err := s.InTx(ctx, func(tx Tx) error {
		var err error
		res, err = s.StepTransitionIn(ctx, tx, p)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// StepTransitionIn is StepTransition inside tx.
func (s *Core) StepTransitionIn(ctx context.Context, tx Tx, p *store.StepTransitionParams) (*store.StepTransitionResult, error) {
	now := UTC(p.Now)
	res := &store.StepTransitionResult{}
	err := func() error {
		from := make([]string, len(p.From))
		for i, st := range p.From {
			from[i] = string(st)
		}
		var expiredBefore any // NULL: no lease guard
		if p.RequireLeaseExpiredBefore != nil {
			expiredBefore = s.d.Clock(*p.RequireLeaseExpiredBefore)
		}
		rs, err := tx.Query(ctx, s.Q("StepsMove"), p.TaskID, s.IDs(p.StepIDs), string(p.To), s.Strs(from), p.ResetAttempts,
			s.J(p.Error), s.TP(p.NextRetryAt), s.T(now), expiredBefore)
		if err != nil {
			return fmt.Errorf("move steps of task %d to %s: %w", p.TaskID, p.To, err)
		}
		var trs []TransitionRow
		for rs.Next() {
			var id int64
			var name, prev string
			var seq int
			if err := rs.Scan(&id, &name, &prev, &seq); err != nil {
				rs.Close()
				return fmt.Errorf("move steps of task %d: %w", p.TaskID, err)
			}
			res.Moved = append(res.Moved, id)
			var meta json.RawMessage
			if len(p.Error) > 0 {
				meta = json.RawMessage(`{"error":` + string(p.Error) + `}`)
			}
			trs = append(trs, TransitionRow{StepID: id, From: prev, To: string(p.To), Event: p.Event, Reason: p.Reason,
				Actor: p.Actor, Seq: seq, Meta: meta})
		}
		rs.Close()
		if err := rs.Err(); err != nil {
			return fmt.Errorf("move steps of task %d: %w", p.TaskID, err)
		}
		if len(trs) > 0 {
			if err := s.d.AppendStepTransitions(ctx, tx, p.TaskID, trs, now); err != nil {
				return err
			}
		}
		if len(res.Moved) > 0 {
			if err := s.QueueApply(ctx, tx, p.TaskID, p.Queue, now); err != nil {
				return err
			}
		}
		if p.Task != nil && (len(res.Moved) > 0 || len(p.StepIDs) == 0) {
			tr, err := s.TaskMove(ctx, tx, p.Task)
			if err != nil {
				return err
			}
			res.Task = tr
		}
		return nil
	}()
	if err != nil {
		return nil, err
	}
	return res, nil
}

// StepLeaseExpired implements store.Store.
func (s *Core) StepLeaseExpired(ctx context.Context, now time.Time, limit int) ([]*taskertype.Step, error) {
	out, err := s.querySteps(ctx, s.Q("StepLeaseExpired"), s.d.Clock(now), limit)
	if err != nil {
		return nil, fmt.Errorf("expired step leases: %w", err)
	}
	return out, nil
}

// StepTransitions implements store.Store.
func (s *Core) StepTransitions(ctx context.Context, taskID int64) ([]*taskertype.Transition, error) {
	return s.transitions(ctx, s.Q("StepTransitions"), taskID)
}

// CheckOutcomes fails naming the first outcome of p whose results or error
// is not valid JSON (before any of them is written).
func CheckOutcomes(p *store.StepRecordParams) error {
	for _, o := range p.Outcomes {
		if len(o.Results) > 0 && !json.Valid(o.Results) {
			return fmt.Errorf("record step %d: results are not valid JSON", o.StepID)
		}
		if len(o.Error) > 0 && !json.Valid(o.Error) {
			return fmt.Errorf("record step %d: error is not valid JSON", o.StepID)
		}
	}
	return nil
}
