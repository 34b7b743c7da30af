package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/store/sqlcore"
	"github.com/tasker-systems/tasker/taskertype"
)

// The transaction executor (PostgreSQL): Store.Transact and the bulk
// operations of store.Tx. Each operation is one statement per kind of row
// for all the calls (of many tasks) the engine's batcher put in the
// transaction: the cost of a statement (a round trip, parse/bind/execute,
// a commit) was most of the cost of a short task. The engine decides what
// goes in a transaction and what each task's summary means; this file only
// stores and reads.

// batchAttempts is how often a transaction is tried when PostgreSQL aborts
// it to break a deadlock or a serialization conflict with another process.
const batchAttempts = 3

// Transact implements store.Store: fn runs in a transaction begun by
// beginBatch (generic plans for the batch statements), again after a
// deadlock or serialization failure.
func (s *Store) Transact(ctx context.Context, fn func(tx store.Tx) error) error {
	var err error
	for range batchAttempts {
		err = s.InTxWith(ctx, s.pg.beginBatch, func(tx sqlcore.Tx) error { return fn(&pgTx{s: s, tx: tx}) })
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "40P01" && pgErr.Code != "40001") {
			return err
		}
	}
	return err
}

// pgTx is PostgreSQL's store.Tx.
type pgTx struct {
	s  *Store
	tx sqlcore.Tx
}

var _ store.Tx = (*pgTx)(nil)

// recordColumns are the outcomes of a batch as s.Q("RecordBatch") reads them:
// one array per column, an outcome's position the same in each. Arrays go
// to the server in binary; a JSON document of the same outcomes cost the
// server ~3 µs per outcome just to parse when the statement was bound.
type recordColumns struct {
	stepIDs                []int64
	owners, states, events []string
	reasons                []string
	results, errs, metas   []json.RawMessage
	nextRetryAt, completed []*time.Time
	backoffs               []*int
	giveBacks              []int
	nows                   []time.Time
	attempts               []int
}

func newRecordColumns(n int) *recordColumns {
	return &recordColumns{stepIDs: make([]int64, 0, n), owners: make([]string, 0, n), states: make([]string, 0, n),
		events: make([]string, 0, n), reasons: make([]string, 0, n), results: make([]json.RawMessage, 0, n),
		errs: make([]json.RawMessage, 0, n), metas: make([]json.RawMessage, 0, n), nextRetryAt: make([]*time.Time, 0, n),
		completed: make([]*time.Time, 0, n), backoffs: make([]*int, 0, n), giveBacks: make([]int, 0, n),
		nows: make([]time.Time, 0, n), attempts: make([]int, 0, n)}
}

// args are the statement's array parameters, $1 to $13, then taskIDs ($14)
// and the attempts ($15).
func (c *recordColumns) args(taskIDs []int64) []any {
	return []any{c.stepIDs, c.owners, c.states, c.events, c.reasons, c.results, c.errs, c.metas, c.nextRetryAt,
		c.backoffs, c.giveBacks, c.nows, c.completed, taskIDs, c.attempts}
}

// nonEmpty is a JSON value, or nil (SQL NULL) for an empty one.
func nonEmpty(v json.RawMessage) json.RawMessage {
	if len(v) == 0 {
		return nil
	}
	return v
}

// StepRecordMany implements store.Tx: every outcome of every record in
// one statement (RecordBatch), which also locks the tasks of ps.Lock.
func (t *pgTx) StepRecordMany(ctx context.Context, ps *store.StepRecordManyParams) ([][]bool, error) {
	type ref struct{ rec, outcome int }
	n := 0
	applied := make([][]bool, len(ps.Records))
	for i, p := range ps.Records {
		if err := sqlcore.CheckOutcomes(p); err != nil {
			return nil, err
		}
		n += len(p.Outcomes)
		applied[i] = make([]bool, len(p.Outcomes))
	}
	cols := newRecordColumns(n)
	refs := make([]ref, 0, n)
	for ri, p := range ps.Records {
		now := sqlcore.UTC(p.Now)
		for i, o := range p.Outcomes {
			mj := json.RawMessage(`{}`) // a success's transition metadata: the attempt, added in SQL
			if len(o.Error) > 0 || o.NextRetryAt != nil {
				meta := map[string]any{}
				if len(o.Error) > 0 {
					meta["error"] = o.Error
				}
				if o.NextRetryAt != nil {
					meta["next_retry_at"] = o.NextRetryAt.UTC()
				}
				var err error
				if mj, err = json.Marshal(meta); err != nil {
					return nil, fmt.Errorf("record step %d of task %d: %w", o.StepID, p.TaskID, err)
				}
			}
			var next, completed *time.Time
			if o.NextRetryAt != nil {
				t := sqlcore.UTC(*o.NextRetryAt)
				next = &t
			}
			if o.To == taskertype.StepStateComplete || o.To == taskertype.StepStateError || o.To == taskertype.StepStateSkipped {
				completed = &now
			}
			giveBack := 0
			if o.GiveBackAttempt {
				giveBack = 1
			}
			cols.stepIDs, cols.owners = append(cols.stepIDs, o.StepID), append(cols.owners, p.Owner)
			cols.states, cols.events = append(cols.states, string(o.To)), append(cols.events, o.Event)
			cols.reasons, cols.results = append(cols.reasons, o.Reason), append(cols.results, nonEmpty(o.Results))
			cols.errs, cols.metas = append(cols.errs, nonEmpty(o.Error)), append(cols.metas, mj)
			cols.nextRetryAt, cols.backoffs = append(cols.nextRetryAt, next), append(cols.backoffs, o.BackoffRequestSeconds)
			cols.giveBacks, cols.nows = append(cols.giveBacks, giveBack), append(cols.nows, now)
			cols.completed, cols.attempts = append(cols.completed, completed), append(cols.attempts, o.Attempt)
			refs = append(refs, ref{ri, i})
		}
	}
	// The tasks to lock, each once, in lock order.
	lock := slices.Clone(ps.Lock)
	slices.Sort(lock)
	lock = slices.Compact(lock)
	if len(refs) == 0 {
		if len(lock) > 0 {
			if _, err := t.tx.Exec(ctx, t.s.Q("LockTasks"), lock); err != nil {
				return nil, fmt.Errorf("lock tasks: %w", err)
			}
		}
		return applied, nil
	}
	rs, err := t.tx.Query(ctx, t.s.Q("RecordBatch"), cols.args(lock)...)
	if err != nil {
		return nil, fmt.Errorf("record steps: %w", err)
	}
	defer rs.Close()
	for rs.Next() {
		var n int
		if err := rs.Scan(&n); err != nil {
			return nil, fmt.Errorf("record steps: %w", err)
		}
		applied[refs[n].rec][refs[n].outcome] = true
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("record steps: %w", err)
	}
	return applied, nil
}

// TaskSummaries implements store.Tx.
func (t *pgTx) TaskSummaries(ctx context.Context, taskIDs []int64, nows []time.Time) (map[int64]*store.TaskSummary, error) {
	if len(taskIDs) != len(nows) {
		return nil, fmt.Errorf("summarize tasks: %d task ids, %d times", len(taskIDs), len(nows))
	}
	if len(taskIDs) == 0 {
		return map[int64]*store.TaskSummary{}, nil
	}
	utc := make([]time.Time, len(nows))
	for i, n := range nows {
		utc[i] = sqlcore.UTC(n)
	}
	return t.s.summaries(ctx, t.tx, taskIDs, utc)
}

// TaskTransitionMany implements store.Tx.
func (t *pgTx) TaskTransitionMany(ctx context.Context, ps []*store.TaskTransitionParams) ([]*store.TransitionResult, []error,
	error) {
	return t.s.taskMoves(ctx, t.tx, ps)
}

// summaries is Store.summary for several distinct tasks in one query.
func (s *Store) summaries(ctx context.Context, tx sqlcore.Tx, taskIDs []int64, nows []time.Time) (map[int64]*store.TaskSummary, error) {
	rs, err := tx.Query(ctx, s.Q("Summaries"), taskIDs, nows)
	if err != nil {
		return nil, fmt.Errorf("summarize tasks: %w", err)
	}
	defer rs.Close()
	out := make(map[int64]*store.TaskSummary, len(taskIDs))
	for rs.Next() {
		var id int64
		var sum store.TaskSummary
		var earliest sqlcore.ScanTime
		if err := rs.Scan(&id, &sum.Total, &sum.Pending, &sum.InProgress, &sum.WaitingForRetry, &sum.Complete,
			&sum.Error, &sum.Cancelled, &sum.Ready, &earliest); err != nil {
			return nil, fmt.Errorf("summarize tasks: %w", err)
		}
		sum.EarliestRetryAt = earliest.Ptr()
		out[id] = &sum
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("summarize tasks: %w", err)
	}
	return out, nil
}

// taskMoveColumns are the guarded task transitions s.Q("TaskMoves") reads, one
// array per column (binary arrays: see recordColumns).
type taskMoveColumns struct {
	taskIDs                          []int64
	to, from                         []string // from: the sources, comma-separated
	terminal                         []bool
	events, reasons, actors          []string
	metas                            []json.RawMessage
	nows, runAts                     []time.Time
	queues, operations, queueReasons []string // queue: "", "delete" or "upsert"
	priorities                       []int
}

func (c *taskMoveColumns) add(taskID int64, to, from string, terminal bool, event, reason, actor string,
	meta json.RawMessage, now time.Time, queue, operation string, runAt time.Time, priority int, queueReason string) {
	c.taskIDs, c.to, c.from, c.terminal = append(c.taskIDs, taskID), append(c.to, to), append(c.from, from),
		append(c.terminal, terminal)
	c.events, c.reasons, c.actors = append(c.events, event), append(c.reasons, reason), append(c.actors, actor)
	c.metas, c.nows, c.queues = append(c.metas, nonEmpty(meta)), append(c.nows, now), append(c.queues, queue)
	c.operations, c.runAts, c.priorities = append(c.operations, operation), append(c.runAts, runAt),
		append(c.priorities, priority)
	c.queueReasons = append(c.queueReasons, queueReason)
}

// args are the statement's parameters, $1 to $14.
func (c *taskMoveColumns) args() []any {
	return []any{c.taskIDs, c.to, c.from, c.terminal, c.events, c.reasons, c.actors, c.metas, c.nows, c.queues,
		c.operations, c.runAts, c.priorities, c.queueReasons}
}

// taskMoved is the outcome of one guarded task transition.
type taskMoved struct {
	ok   bool   // the guard held and the task moved
	prev string // the state it left (when ok)
	seq  int    // its new transition_seq (when ok)
}

// applyTaskMoves applies guarded task transitions, their transition rows
// and their queue operations in one statement: the one place PostgreSQL
// writes a task transition (a single TaskTransition is a batch of one).
// moved[i] reports transition i. err fails the whole transaction.
func (d *driver) applyTaskMoves(ctx context.Context, tx sqlcore.Querier, ps []*store.TaskTransitionParams) ([]taskMoved, error) {
	moved := make([]taskMoved, len(ps))
	if len(ps) == 0 {
		return moved, nil
	}
	var cols taskMoveColumns
	for _, p := range ps {
		from := make([]string, len(p.From))
		for j, st := range p.From {
			from[j] = string(st)
		}
		now := sqlcore.UTC(p.Now)
		var queue, operation, queueReason string
		var runAt time.Time
		var priority int
		switch p.Queue.Kind {
		case store.QueueNone:
		case store.QueueDelete:
			queue = "delete"
		case store.QueueUpsert:
			queue, operation, runAt, priority, queueReason = "upsert", p.Queue.Operation, sqlcore.UTC(p.Queue.RunAt),
				p.Queue.Priority, p.Queue.Reason
			if p.Queue.RunAt.IsZero() {
				runAt = now
			}
			if operation == "" {
				operation = "enqueue"
			}
		default:
			return nil, fmt.Errorf("transition task %d: unknown queue operation %d", p.TaskID, p.Queue.Kind)
		}
		cols.add(p.TaskID, string(p.To), strings.Join(from, ","), p.To.Terminal(), p.Event, p.Reason, p.Actor, p.Meta, now,
			queue, operation, runAt, priority, queueReason)
	}
	rs, err := tx.Query(ctx, d.q["TaskMoves"], cols.args()...)
	if err != nil {
		return nil, fmt.Errorf("transition tasks: %w", err)
	}
	defer rs.Close()
	for rs.Next() {
		var n, seq int
		var prev string
		if err := rs.Scan(&n, &prev, &seq); err != nil {
			return nil, fmt.Errorf("transition tasks: %w", err)
		}
		moved[n] = taskMoved{ok: true, prev: prev, seq: seq}
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("transition tasks: %w", err)
	}
	return moved, nil
}

// taskMoves is applyTaskMoves with each transition's result: changed, or
// the task's unchanged state (an operator moved it); errs[i] is a
// TaskNotFoundError for a task that does not exist.
func (s *Store) taskMoves(ctx context.Context, tx sqlcore.Tx, ps []*store.TaskTransitionParams) (
	[]*store.TransitionResult, []error, error) {
	moved, err := s.drv.applyTaskMoves(ctx, tx, ps)
	if err != nil {
		return nil, nil, err
	}
	results := make([]*store.TransitionResult, len(ps))
	errs := make([]error, len(ps))
	var stale []int64
	for i, m := range moved {
		if m.ok {
			results[i] = &store.TransitionResult{Changed: true, State: ps[i].To}
		} else {
			stale = append(stale, ps[i].TaskID)
		}
	}
	if len(stale) == 0 {
		return results, errs, nil
	}
	states := map[int64]taskertype.TaskState{}
	srs, err := tx.Query(ctx, s.Q("TaskStates"), stale)
	if err != nil {
		return nil, nil, fmt.Errorf("task states: %w", err)
	}
	for srs.Next() {
		var id int64
		var st string
		if err := srs.Scan(&id, &st); err != nil {
			srs.Close()
			return nil, nil, fmt.Errorf("task states: %w", err)
		}
		states[id] = taskertype.TaskState(st)
	}
	srs.Close()
	if err := srs.Err(); err != nil {
		return nil, nil, fmt.Errorf("task states: %w", err)
	}
	for i, r := range results {
		if r != nil {
			continue
		}
		if st, ok := states[ps[i].TaskID]; ok {
			results[i] = &store.TransitionResult{Changed: false, State: st}
		} else {
			errs[i] = &taskertype.TaskNotFoundError{TaskID: ps[i].TaskID}
		}
	}
	return results, errs, nil
}

// claimReq is one claim of TaskStartAndClaimMany while it runs.
type claimReq struct {
	start *store.TaskTransitionParams // nil for a plain claim
	p     *store.StepClaimParams

	tr      *store.TransitionResult
	task    *taskertype.Task // read after the start
	claimed []*store.ClaimedStep
	err     error
}

// TaskStartAndClaimMany implements store.Tx: the start transitions in one
// statement, the tasks read back in one, then the claims in one statement
// per round (see claimBatchTx).
func (t *pgTx) TaskStartAndClaimMany(ctx context.Context, ps []*store.StartAndClaimParams) ([]*store.StartAndClaimResult, error) {
	batch := make([]*claimReq, len(ps))
	for i, p := range ps {
		if p.Claim == nil {
			return nil, fmt.Errorf("claim %d: no claim parameters", i)
		}
		batch[i] = &claimReq{start: p.Start, p: p.Claim}
	}
	if err := t.s.claimBatchTx(ctx, t.tx, batch); err != nil {
		return nil, err
	}
	out := make([]*store.StartAndClaimResult, len(batch))
	for i, r := range batch {
		out[i] = &store.StartAndClaimResult{Transition: r.tr, Task: r.task, Claimed: r.claimed, Err: r.err}
	}
	return out, nil
}

// claimDoc is one claim in the JSON document s.Q("ClaimBatch") reads. A claim
// with LeaseMicros (store.StepClaimParams.Lease) has no Now or LeaseUntil:
// the statement takes them from the database's clock.
type claimDoc struct {
	N           int        `json:"n"`
	TaskID      int64      `json:"task_id"`
	Owner       string     `json:"owner"`
	Limit       int        `json:"lim"`
	Now         *time.Time `json:"now,omitempty"`
	LeaseUntil  *time.Time `json:"lease_until,omitempty"`
	LeaseMicros int64      `json:"lease_us,omitempty"`
	Names       []string   `json:"names,omitempty"`
}

// startedTasks reads the tasks of the start requests after their start
// transitions, in one query, and sets each request's transition result:
// changed (moved[i]), or the state the task is in.
func (s *Store) startedTasks(ctx context.Context, tx sqlcore.Tx, starters []*claimReq, moved []taskMoved) error {
	ids := make([]int64, len(starters))
	for i, r := range starters {
		ids[i] = r.start.TaskID
	}
	if len(ids) == 0 {
		return nil
	}
	// previous_state is the state a moved task left.
	rs, err := tx.Query(ctx, s.Q("StartedTasks"), ids)
	if err != nil {
		return fmt.Errorf("read started tasks: %w", err)
	}
	defer rs.Close()
	byID := make(map[int64]*taskertype.Task, len(ids))
	moves := make(map[int64]store.TransitionResult, len(ids))
	for rs.Next() {
		var from string
		var seq int
		t, err := sqlcore.ScanTask(rs, &from, &seq)
		if err != nil {
			return fmt.Errorf("read started tasks: %w", err)
		}
		byID[t.ID], moves[t.ID] = t, store.TransitionResult{From: taskertype.TaskState(from), Seq: seq}
	}
	if err := rs.Err(); err != nil {
		return fmt.Errorf("read started tasks: %w", err)
	}
	for i, r := range starters {
		if r.task = byID[r.start.TaskID]; r.task == nil {
			r.err = &taskertype.TaskNotFoundError{TaskID: r.start.TaskID}
			continue
		}
		r.tr = &store.TransitionResult{Changed: moved[i].ok, State: r.task.State}
		if moved[i].ok {
			r.tr.From, r.tr.Seq = moves[r.task.ID].From, moves[r.task.ID].Seq
		}
	}
	return nil
}

func (s *Store) claimBatchTx(ctx context.Context, tx sqlcore.Tx, batch []*claimReq) error {
	began := time.Now()
	// Start transitions first; a task that left the start's sources (an
	// operator cancelled it) claims nothing.
	var starts []*store.TaskTransitionParams
	var starters []*claimReq
	for _, r := range batch {
		if r.start != nil {
			starts = append(starts, r.start)
			starters = append(starters, r)
		}
	}
	moved, err := s.drv.applyTaskMoves(ctx, tx, starts)
	if err != nil {
		return err
	}
	if err := s.startedTasks(ctx, tx, starters, moved); err != nil {
		return err
	}
	// Claims of one task go in separate statements (rounds): within one
	// statement a second claim of the task would pick the rows the first
	// has just locked (a transaction's own locks are not skipped) and both
	// would count them. A later statement sees them in progress.
	var rounds [][]*claimReq
	perTask := map[int64]int{}
	for _, r := range batch {
		if r.err != nil || (r.tr != nil && !r.tr.Changed && r.tr.State != r.start.To) {
			continue
		}
		i := perTask[r.p.TaskID]
		perTask[r.p.TaskID]++
		if i == len(rounds) {
			rounds = append(rounds, nil)
		}
		rounds[i] = append(rounds[i], r)
	}
	withParents := map[int64]*store.ClaimedStep{}
	for _, round := range rounds {
		if err := s.claimRound(ctx, tx, round, withParents); err != nil {
			return err
		}
	}
	if err := s.DependencyResults(ctx, tx, withParents); err != nil {
		return err
	}
	byLease := map[time.Duration][]*store.ClaimedStep{}
	for _, r := range batch {
		if r.p.Lease > 0 && len(r.claimed) > 0 {
			byLease[r.p.Lease] = append(byLease[r.p.Lease], r.claimed...)
		}
	}
	for lease, claimed := range byLease {
		if err := s.RenewSlowClaim(ctx, tx, claimed, lease, began); err != nil {
			return err
		}
	}
	return nil
}

// claimRound runs s.Q("ClaimBatch") for claims of distinct tasks and notes the
// claimed steps that have parents in withParents.
func (s *Store) claimRound(ctx context.Context, tx sqlcore.Tx, round []*claimReq, withParents map[int64]*store.ClaimedStep) error {
	var docs []claimDoc
	var claimers []*claimReq
	for _, r := range round {
		limit := r.p.Limit
		if limit == 0 && r.task != nil {
			limit = r.task.MaxParallelSteps
		}
		if limit <= 0 {
			continue
		}
		d := claimDoc{N: len(docs), TaskID: r.p.TaskID, Owner: r.p.Owner, Limit: limit,
			Names: r.p.FirstClaimNames(r.tr, r.task)}
		if r.p.Lease > 0 {
			d.LeaseMicros = max(r.p.Lease.Microseconds(), 1)
		} else {
			now, until := sqlcore.UTC(r.p.Now), sqlcore.UTC(r.p.LeaseUntil)
			d.Now, d.LeaseUntil = &now, &until
		}
		docs = append(docs, d)
		claimers = append(claimers, r)
	}
	if len(docs) == 0 {
		return nil
	}
	doc, err := json.Marshal(docs)
	if err != nil {
		return fmt.Errorf("claim steps: %w", err)
	}
	rs, err := tx.Query(ctx, s.Q("ClaimBatch"), doc)
	if err != nil {
		return fmt.Errorf("claim steps: %w", err)
	}
	var prev, owner string
	var seq, n, attempt int
	var hasParents bool
	var now sqlcore.ScanTime
	sc := sqlcore.NewStepScanner(&prev, &seq, &hasParents, &n, &owner, &now, &attempt)
	for rs.Next() {
		st, err := sc.Scan(rs)
		if err != nil {
			rs.Close()
			return fmt.Errorf("claim steps: %w", err)
		}
		c := &store.ClaimedStep{Step: st, DependencyResults: map[string]json.RawMessage{}}
		claimers[n].claimed = append(claimers[n].claimed, c)
		if hasParents {
			withParents[st.ID] = c
		}
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return fmt.Errorf("claim steps: %w", err)
	}
	return nil
}

// ConcurrencyLockMany implements store.Tx (sqlcore.Core.ConcurrencyLockMany).
func (t *pgTx) ConcurrencyLockMany(ctx context.Context, taskIDs []int64) (*store.ConcurrencyLocked, error) {
	return t.s.Core.ConcurrencyLockMany(ctx, t.tx, taskIDs)
}

// HandlerAdmit implements store.Tx (sqlcore.Core.HandlerAdmitIn).
func (t *pgTx) HandlerAdmit(ctx context.Context, p *store.HandlerAdmitParams) (*store.HandlerAdmitResult, error) {
	return t.s.Core.HandlerAdmitIn(ctx, t.tx, p)
}
