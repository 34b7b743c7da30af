package sqlstore

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

// stepScanner reads rows of stepCols (then the extra columns) into steps.
// One scanner serves every row of a query: its destination list and
// scratch values are made once, not once per row (a claim reads
// thousands of rows).
type stepScanner struct {
	st                                            taskertype.Step
	state                                         string
	cfg, inputs, results, errDoc                  []byte
	backoff                                       *int
	lastAt, nextAt, leaseAt, created, updated, at scanTime
	dest                                          []any
}

func newStepScanner(extra ...any) *stepScanner {
	s := &stepScanner{}
	st := &s.st
	s.dest = append(make([]any, 0, 22+len(extra)), &st.ID, &st.TaskID, &st.Name, &st.HandlerClass, &s.cfg, &s.state,
		&st.Retryable, &st.Attempts, &st.MaxAttempts, &st.TimeoutSeconds, &st.Skippable, &s.inputs, &s.results,
		&s.errDoc, &s.backoff, &s.lastAt, &s.nextAt, &st.LeaseOwner, &s.leaseAt, &s.created, &s.updated, &s.at)
	s.dest = append(s.dest, extra...)
	return s
}

// scan reads one row into a new step. The drivers copy []byte and
// allocate strings per row; the backoff pointer is cleared so that a
// driver allocates it afresh rather than writing through last row's.
func (s *stepScanner) scan(r row) (*taskertype.Step, error) {
	s.backoff = nil
	if err := r.Scan(s.dest...); err != nil {
		return nil, err
	}
	st := s.st
	st.State = taskertype.StepState(s.state)
	st.HandlerConfig, st.Inputs, st.Results, st.Error = s.cfg, s.inputs, s.results, s.errDoc
	st.BackoffRequestSeconds = s.backoff
	st.LastAttemptedAt, st.NextRetryAt, st.LeaseExpiresAt = s.lastAt.ptr(), s.nextAt.ptr(), s.leaseAt.ptr()
	st.CreatedAt, st.UpdatedAt, st.CompletedAt = s.created.T, s.updated.T, s.at.ptr()
	return &st, nil
}

// querySteps runs q (selecting stepCols) and reads the steps it returns.
func (s *Store) querySteps(ctx context.Context, q string, args ...any) ([]*taskertype.Step, error) {
	rs, err := s.db.query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []*taskertype.Step
	sc := newStepScanner()
	for rs.Next() {
		st, err := sc.scan(rs)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, rs.Err()
}

// StepList implements store.Store.
func (s *Store) StepList(ctx context.Context, taskID int64) ([]*taskertype.Step, error) {
	out, err := s.querySteps(ctx, `SELECT `+stepCols+` FROM tasker_workflow_steps s WHERE s.task_id = $1 ORDER BY s.step_id`, taskID)
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
func (s *Store) StepsByID(ctx context.Context, taskID int64, ids []int64) ([]*taskertype.Step, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	out, err := s.querySteps(ctx, `SELECT `+stepCols+` FROM tasker_workflow_steps s WHERE s.task_id = $1 AND `+
		inList(s.dialect, "s.step_id", 2)+` ORDER BY s.step_id`, taskID, s.ids(ids))
	if err != nil {
		return nil, fmt.Errorf("steps of task %d: %w", taskID, err)
	}
	return out, nil
}

func (s *Store) eachParent(ctx context.Context, taskID int64, fn func(child int64, parent string, state taskertype.StepState)) error {
	rs, err := s.db.query(ctx, s.q.stepParents, taskID)
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
func (s *Store) StepReadiness(ctx context.Context, taskID int64, now time.Time) ([]*taskertype.StepReadiness, error) {
	rs, err := s.db.query(ctx, s.q.stepReadiness, taskID, s.t(now))
	if err != nil {
		return nil, fmt.Errorf("step readiness of task %d: %w", taskID, err)
	}
	var out []*taskertype.StepReadiness
	byID := map[int64]*taskertype.StepReadiness{}
	for rs.Next() {
		var r taskertype.StepReadiness
		var state string
		var next, lease scanTime
		var eligible, expired, ready int
		if err := rs.Scan(&r.StepID, &r.Name, &state, &r.Attempts, &r.MaxAttempts, &r.Retryable, &next,
			&r.LeaseOwner, &lease, &r.TotalParents, &r.CompletedParents, &eligible, &expired, &ready); err != nil {
			rs.Close()
			return nil, fmt.Errorf("step readiness of task %d: %w", taskID, err)
		}
		r.State = taskertype.StepState(state)
		r.NextRetryAt, r.LeaseExpiresAt = next.ptr(), lease.ptr()
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

// StepClaim implements store.Store.
func (s *Store) StepClaim(ctx context.Context, p *store.StepClaimParams) ([]*store.ClaimedStep, error) {
	if s.claims != nil {
		r, err := s.claimBatched(nil, p)
		if err != nil {
			return nil, err
		}
		return r.claimed, nil
	}
	var claimed []*store.ClaimedStep
	err := s.inTx(ctx, func(tx txer) error {
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
	if s.claims != nil {
		r, err := s.claimBatched(start, p)
		if err != nil {
			return nil, nil, nil, err
		}
		return r.tr, r.task, r.claimed, nil
	}
	var tr *store.TransitionResult
	var task *taskertype.Task
	var claimed []*store.ClaimedStep
	err := s.inTx(ctx, func(tx txer) error {
		var err error
		claimed = nil
		if tr, err = s.taskMove(ctx, tx, start); err != nil {
			return err
		}
		if task, err = s.taskGet(ctx, tx, start.TaskID); err != nil {
			return err
		}
		if !tr.Changed && tr.State != start.To {
			return nil // the task left the start's sources: claim nothing
		}
		cp := *p
		if cp.Limit == 0 {
			cp.Limit = task.MaxParallelSteps
		}
		cp.Names = firstClaimNames(p, tr, task)
		claimed, err = s.claimTx(ctx, tx, &cp)
		return err
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return tr, task, claimed, nil
}

// firstClaimNames is the name filter of the claim that follows a task's
// start: p.Names, or, when this was the task's first start (transition 1
// created it pending, 2 starts it), the names p.FirstNames gives. A task
// yielded or retried back to pending has run steps, so any step may be
// ready. (An operator may resolve a step of a task not yet started: its
// children are then ready without being roots. The finalizer counts them
// ready and the coordinator claims them with a general claim.)
func firstClaimNames(p *store.StepClaimParams, tr *store.TransitionResult, task *taskertype.Task) []string {
	if len(p.Names) > 0 || p.FirstNames == nil || tr == nil || !tr.Changed || tr.From != taskertype.TaskStatePending ||
		tr.Seq != 2 {
		return p.Names
	}
	return p.FirstNames(task)
}

// claimTx claims up to p.Limit ready steps inside tx.
// With p.Lease the claim's time is taken now, inside the transaction: this
// is SQLite's path (PostgreSQL claims through claimBatchSQL), whose clock
// is this machine's and whose transaction holds the database's one writer.
func (s *Store) claimTx(ctx context.Context, tx txer, p *store.StepClaimParams) ([]*store.ClaimedStep, error) {
	now, until := utc(p.Now), p.LeaseUntil
	if p.Lease > 0 {
		now = utc(time.Now())
		until = now.Add(p.Lease)
	}
	var names any // NULL: any step
	if len(p.Names) > 0 {
		names = s.strs(p.Names)
	}
	rs, err := tx.query(ctx, s.q.stepClaim, p.TaskID, s.t(now), p.Owner, s.t(until), p.Limit, names)
	if err != nil {
		return nil, fmt.Errorf("claim steps: %w", err)
	}
	var claimed []*store.ClaimedStep
	withParents := map[int64]*store.ClaimedStep{}
	var trs []transitionRow
	var prev string
	var seq int
	var hasParents bool
	sc := newStepScanner(&prev, &seq, &hasParents)
	for rs.Next() {
		st, err := sc.scan(rs)
		if err != nil {
			rs.Close()
			return nil, fmt.Errorf("claim steps: %w", err)
		}
		c := &store.ClaimedStep{Step: st, DependencyResults: map[string]json.RawMessage{}}
		claimed = append(claimed, c)
		if hasParents {
			withParents[st.ID] = c
		}
		trs = append(trs, transitionRow{stepID: st.ID, from: prev, to: string(taskertype.StepStateInProgress),
			event: "claim", actor: p.Owner, seq: seq, meta: attemptMeta(st.Attempts)})
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("claim steps: %w", err)
	}
	if len(claimed) == 0 {
		return nil, nil
	}
	if err := s.appendStepTransitions(ctx, tx, p.TaskID, trs, now); err != nil {
		return nil, err
	}
	if err := s.dependencyResults(ctx, tx, withParents); err != nil {
		return nil, err
	}
	if p.Lease > 0 {
		if err := s.renewSlowClaim(ctx, tx, claimed, p.Lease, now); err != nil {
			return nil, err
		}
	}
	return claimed, nil
}

// renewSlowClaim restarts the leases of claimed steps from the database's
// clock now when the claim's transaction has run for more than a tenth of
// the lease since began: the lease was granted when the claim statement
// started, and a claim of many steps on a loaded server (the statement, then
// their parents' results) can spend much of it before the coordinator even
// sees the steps (fault injection: a 600-step claim that took two seconds
// lost its 2 s leases to the rescuer). The rows are this transaction's,
// so the update waits for no one; a quick claim skips it.
func (s *Store) renewSlowClaim(ctx context.Context, tx txer, claimed []*store.ClaimedStep, lease time.Duration,
	began time.Time) error {
	if time.Since(began) <= lease/10 {
		return nil
	}
	ids := make([]int64, len(claimed))
	for i, c := range claimed {
		ids[i] = c.Step.ID
	}
	var until time.Time
	if s.dialect == dialectSQLite {
		until = utc(time.Now().Add(lease))
		if _, err := tx.exec(ctx, `UPDATE tasker_workflow_steps SET lease_expires_at = $1 WHERE step_id IN (SELECT value FROM json_each($2))`,
			s.t(until), s.ids(ids)); err != nil {
			return fmt.Errorf("renew claimed leases: %w", err)
		}
	} else {
		if err := tx.queryRow(ctx, `WITH u AS (UPDATE tasker_workflow_steps SET lease_expires_at = clock_timestamp() + $1::bigint * interval '1 microsecond'
	WHERE step_id = ANY($2::bigint[]) RETURNING lease_expires_at) SELECT max(lease_expires_at) FROM u`,
			max(lease.Microseconds(), 1), ids).Scan(&until); err != nil {
			return fmt.Errorf("renew claimed leases: %w", err)
		}
		until = until.UTC()
	}
	for _, c := range claimed {
		c.Step.LeaseExpiresAt = &until
	}
	return nil
}

// dependencyResults reads the results of the parents of the claimed steps
// in withParents (the claimed steps that have parents, by id) into their
// DependencyResults and Parents. Edges are written with the task and never
// change, so steps without parents need no read.
func (s *Store) dependencyResults(ctx context.Context, tx txer, withParents map[int64]*store.ClaimedStep) error {
	if len(withParents) == 0 {
		return nil
	}
	ids := slices.Collect(maps.Keys(withParents))
	rs, err := tx.query(ctx, s.q.depResults, s.ids(ids))
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

func attemptMeta(attempt int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"attempt":%d}`, attempt))
}

type transitionRow struct {
	stepID   int64
	from, to string
	event    string
	reason   string
	actor    string
	seq      int
	meta     json.RawMessage
}

func (s *Store) appendStepTransitions(ctx context.Context, tx txer, taskID int64, trs []transitionRow, now time.Time) error {
	ids := make([]int64, len(trs))
	for i, tr := range trs {
		ids[i] = tr.stepID
	}
	if s.q.stepTransitions != "" {
		n := len(trs)
		from, to, event, reason, actor := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		meta, seq := make([]*string, n), make([]int32, n)
		for i, tr := range trs {
			from[i], to[i], event[i], reason[i], actor[i], seq[i] = tr.from, tr.to, tr.event, tr.reason, tr.actor, int32(tr.seq)
			if len(tr.meta) > 0 {
				m := string(tr.meta)
				meta[i] = &m
			}
		}
		if _, err := tx.exec(ctx, s.q.stepTransitions, taskID, ids, from, to, event, reason, actor, meta, seq, s.t(now)); err != nil {
			return fmt.Errorf("step transitions: %w", err)
		}
		return nil
	}
	err := s.insertRows(ctx, tx, `INSERT INTO tasker_workflow_step_transitions (step_id, task_id, from_state, to_state, event, reason, actor,
	metadata, sort_key, created_at) VALUES`, 10, len(trs),
		func(i int) []any {
			tr := trs[i]
			return []any{tr.stepID, taskID, tr.from, tr.to, tr.event, tr.reason, tr.actor, s.j(tr.meta), tr.seq, s.t(now)}
		}, "", nil)
	if err != nil {
		return fmt.Errorf("step transitions: %w", err)
	}
	return nil
}

// StepRecord implements store.Store. Every outcome of the batch is applied
// by one UPDATE joined with the outcomes passed as one JSON document, so a
// batch costs the same few round trips whatever its size.
func (s *Store) StepRecord(ctx context.Context, p *store.StepRecordParams) ([]bool, error) {
	applied, _, err := s.stepRecord(ctx, p, nil)
	return applied, err
}

// StepRecordFinalize implements store.Store: StepRecord, then in the same
// transaction the task's summary is handed to decide and the transition it
// returns (if any) is applied.
func (s *Store) StepRecordFinalize(ctx context.Context, p *store.StepRecordParams,
	decide func(*store.TaskSummary) *store.TaskTransitionParams) ([]bool, *store.TransitionResult, error) {
	return s.stepRecord(ctx, p, decide)
}

func (s *Store) stepRecord(ctx context.Context, p *store.StepRecordParams,
	decide func(*store.TaskSummary) *store.TaskTransitionParams) ([]bool, *store.TransitionResult, error) {
	now := utc(p.Now)
	applied := make([]bool, len(p.Outcomes))
	if len(p.Outcomes) == 0 && decide == nil {
		return applied, nil, nil
	}
	for _, o := range p.Outcomes {
		if len(o.Results) > 0 && !json.Valid(o.Results) {
			return nil, nil, fmt.Errorf("record step %d: results are not valid JSON", o.StepID)
		}
		if len(o.Error) > 0 && !json.Valid(o.Error) {
			return nil, nil, fmt.Errorf("record step %d: error is not valid JSON", o.StepID)
		}
	}
	if s.records != nil {
		return s.recordBatched(p, decide)
	}
	docs := make([]recordDoc, len(p.Outcomes))
	index := make(map[int64]int, len(p.Outcomes))
	for i, o := range p.Outcomes {
		d := recordDoc{StepID: o.StepID, State: string(o.To), Results: o.Results, Error: o.Error,
			NextRetryAt: s.tp(o.NextRetryAt), Backoff: o.BackoffRequestSeconds, Attempt: o.Attempt}
		if o.GiveBackAttempt {
			d.GiveBack = 1
		}
		if o.To == taskertype.StepStateComplete && o.Attempt > 0 && !o.GiveBackAttempt {
			d.LateOK = 1
		}
		if o.To == taskertype.StepStateComplete || o.To == taskertype.StepStateError {
			d.CompletedAt = s.t(now)
		}
		docs[i] = d
		index[o.StepID] = i
	}
	doc, err := json.Marshal(docs)
	if err != nil {
		return nil, nil, fmt.Errorf("record steps: %w", err)
	}
	var tr *store.TransitionResult
	err = s.inTx(ctx, func(tx txer) error {
		clear(applied)
		tr = nil
		if err := s.recordTx(ctx, tx, p, string(doc), docs, index, applied, now); err != nil {
			return err
		}
		if decide == nil {
			return nil
		}
		sum, err := s.summary(ctx, tx, p.TaskID, now)
		if err != nil {
			return err
		}
		if tp := decide(sum); tp != nil {
			tr, err = s.taskMove(ctx, tx, tp)
		}
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return applied, tr, nil
}

// recordTx applies a batch of outcomes inside tx (see recordSQLite; SQLite only) and
// appends the moved steps' transitions; applied[i] reports outcome i.
func (s *Store) recordTx(ctx context.Context, tx txer, p *store.StepRecordParams, doc string, docs []recordDoc,
	index map[int64]int, applied []bool, now time.Time) error {
	rs, err := tx.query(ctx, recordSQLite, doc, s.t(now), p.Owner)
	if err != nil {
		return fmt.Errorf("record steps: %w", err)
	}
	var trs []transitionRow
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
		trs = append(trs, transitionRow{stepID: o.StepID, from: prev, to: string(o.To), event: o.Event,
			reason: o.Reason, actor: p.Owner, seq: seq, meta: mj})
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return fmt.Errorf("record steps: %w", err)
	}
	if len(trs) == 0 {
		return nil
	}
	// Transitions in the order of the outcomes, as before batching.
	slices.SortFunc(trs, func(a, b transitionRow) int { return index[a.stepID] - index[b.stepID] })
	return s.appendStepTransitions(ctx, tx, p.TaskID, trs, now)
}

// recordDoc is one outcome in the JSON document recordSQLite reads.
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

// recordSQLite applies a batch of outcomes ($1, a JSON array) to steps still
// in progress under owner $3's lease in the outcome's attempt (0: any), and
// a late success to a step the rescuer failed for that same attempt that no
// later attempt has claimed (see store.StepOutcome.Attempt); the steps are
// $4, an id list. Steps no longer held are left alone (rescued, resolved or
// cancelled meanwhile) and not returned. PostgreSQL records through
// recordBatchSQL (batch.go).
const recordSQLite = `WITH o AS MATERIALIZED (
	SELECT value ->> '$.step_id' AS step_id, value ->> '$.state' AS state, value -> '$.results' AS results,
		value -> '$.error' AS error, value ->> '$.next_retry_at' AS next_retry_at, value ->> '$.backoff' AS backoff,
		value ->> '$.give_back' AS give_back, value ->> '$.completed_at' AS completed_at, value ->> '$.attempt' AS attempt,
		value ->> '$.late_ok' AS late_ok FROM json_each($1))
UPDATE tasker_workflow_steps AS s SET state = o.state, previous_state = s.state, transition_seq = s.transition_seq + 1,
	results = COALESCE(o.results, s.results), error = o.error, next_retry_at = o.next_retry_at,
	backoff_request_seconds = o.backoff, attempts = s.attempts - o.give_back, lease_owner = NULL, lease_expires_at = NULL,
	updated_at = $2, completed_at = o.completed_at
FROM o
WHERE s.step_id = o.step_id AND (o.attempt = 0 OR s.attempts = o.attempt)
	AND ((s.state = 'in_progress' AND s.lease_owner = $3)
		OR (o.late_ok = 1 AND s.state = 'waiting_for_retry' AND s.error ->> '$.kind' = 'lease_expired'))
RETURNING step_id, previous_state, transition_seq, attempts`

// StepTransition implements store.Store.
func (s *Store) StepTransition(ctx context.Context, p *store.StepTransitionParams) (*store.StepTransitionResult, error) {
	now := utc(p.Now)
	res := &store.StepTransitionResult{}
	err := s.inTx(ctx, func(tx txer) error {
		res.Moved = res.Moved[:0]
		from := make([]string, len(p.From))
		for i, st := range p.From {
			from[i] = string(st)
		}
		expiredBefore := p.RequireLeaseExpiredBefore
		if expiredBefore != nil && expiredBefore.IsZero() && s.dialect == dialectSQLite {
			t := time.Now() // the database's clock (PostgreSQL reads its own, see stepsMove)
			expiredBefore = &t
		}
		rs, err := tx.query(ctx, s.q.stepsMove, p.TaskID, s.ids(p.StepIDs), string(p.To), s.strs(from), p.ResetAttempts,
			s.j(p.Error), s.tp(p.NextRetryAt), s.t(now), s.tp(expiredBefore))
		if err != nil {
			return fmt.Errorf("move steps of task %d to %s: %w", p.TaskID, p.To, err)
		}
		var trs []transitionRow
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
			trs = append(trs, transitionRow{stepID: id, from: prev, to: string(p.To), event: p.Event, reason: p.Reason,
				actor: p.Actor, seq: seq, meta: meta})
		}
		rs.Close()
		if err := rs.Err(); err != nil {
			return fmt.Errorf("move steps of task %d: %w", p.TaskID, err)
		}
		if len(trs) > 0 {
			if err := s.appendStepTransitions(ctx, tx, p.TaskID, trs, now); err != nil {
				return err
			}
		}
		if len(res.Moved) > 0 {
			if err := s.queueApply(ctx, tx, p.TaskID, p.Queue, now); err != nil {
				return err
			}
		}
		if p.Task != nil && (len(res.Moved) > 0 || len(p.StepIDs) == 0) {
			tr, err := s.taskMove(ctx, tx, p.Task)
			if err != nil {
				return err
			}
			res.Task = tr
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// StepLeaseExtend implements store.Store. On PostgreSQL the new end is the
// server's clock at the statement plus lease; on SQLite, this machine's.
func (s *Store) StepLeaseExtend(ctx context.Context, owner string, stepIDs []int64, lease time.Duration) (int, time.Time, error) {
	if s.dialect == dialectSQLite {
		until := utc(time.Now().Add(lease))
		if len(stepIDs) == 0 {
			return 0, until, nil
		}
		n, err := s.db.exec(ctx, s.q.leaseExtend, owner, s.t(until), s.ids(stepIDs))
		if err != nil {
			return 0, time.Time{}, fmt.Errorf("extend step leases: %w", err)
		}
		return int(n), until, nil
	}
	var n int
	var until time.Time
	if err := s.db.queryRow(ctx, leaseExtendPG, owner, max(lease.Microseconds(), 1), s.ids(stepIDs)).Scan(&n, &until); err != nil {
		return 0, time.Time{}, fmt.Errorf("extend step leases: %w", err)
	}
	return n, until.UTC(), nil
}

// leaseExtendPG extends the leases of steps $3 still held by $1 to $2
// microseconds after the server's clock, and returns how many it extended
// and the new end.
const leaseExtendPG = `WITH u AS (
	UPDATE tasker_workflow_steps SET lease_expires_at = statement_timestamp() + $2::bigint * interval '1 microsecond'
	WHERE state = 'in_progress' AND lease_owner = $1 AND step_id = ANY($3::bigint[]) RETURNING 1)
SELECT (SELECT count(*) FROM u)::integer, statement_timestamp() + $2::bigint * interval '1 microsecond'`

// StepLeaseExpired implements store.Store.
func (s *Store) StepLeaseExpired(ctx context.Context, now time.Time, limit int) ([]*taskertype.Step, error) {
	var at any = nil // PostgreSQL: the server's clock
	if !now.IsZero() {
		at = s.t(now)
	} else if s.dialect == dialectSQLite {
		at = s.t(time.Now())
	}
	clock := "$1"
	if s.dialect == dialectPostgres {
		clock = "COALESCE($1::timestamptz, statement_timestamp())"
	}
	out, err := s.querySteps(ctx, `SELECT `+stepCols+` FROM tasker_workflow_steps s
WHERE s.state = 'in_progress' AND s.lease_expires_at < `+clock+` ORDER BY s.lease_expires_at LIMIT $2`, at, limit)
	if err != nil {
		return nil, fmt.Errorf("expired step leases: %w", err)
	}
	return out, nil
}

// StepTransitions implements store.Store.
func (s *Store) StepTransitions(ctx context.Context, taskID int64) ([]*taskertype.Transition, error) {
	return s.transitions(ctx, `SELECT tr.id, tr.task_id, tr.step_id, s.name, COALESCE(tr.from_state, ''), tr.to_state, tr.event,
	tr.reason, tr.actor, tr.metadata, tr.sort_key, tr.sort_key = s.transition_seq, tr.created_at
FROM tasker_workflow_step_transitions tr JOIN tasker_workflow_steps s ON s.step_id = tr.step_id
WHERE s.task_id = $1 ORDER BY tr.step_id, tr.sort_key`, taskID)
}
