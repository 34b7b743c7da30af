package postgres

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/store/sqlcore"
	"github.com/tasker-systems/tasker/taskertype"
)

// Cross-task batching (PostgreSQL). Every coordinator of a runner records
// its steps' results and finalizes its task through the same few
// statements: the cost of a statement (a round trip, parse/bind/execute,
// a commit) was most of the cost of a short task. A combiner gathers the
// calls that arrive while earlier batches are running and executes them
// together: one transaction, one statement per kind of write for the whole
// batch, whatever the number of tasks in it. An idle store runs each call
// alone as soon as it arrives, so batching adds no waiting; a busy one
// batches as much as is queued. Each call keeps its own result: steps no
// longer held are reported unapplied and a finalizer transition whose guard
// fails reports the task's state, exactly as when run alone.

// errStoreClosed is returned by calls made after Close.
var errStoreClosed = errors.New("store closed")

// combinerWorkers is how many batches of one kind run at once: enough to
// keep a commit's flush and the next batch's statements overlapping.
const combinerWorkers = 2

// maxBatch caps the calls in one batch.
const maxBatch = 256

// call is what every combined request carries: its error (set by the
// batch, or by the batch's transaction for this request alone) and the
// signal that its results are set.
type call struct {
	err  error
	done chan struct{}
}

func (c *call) base() *call { return c }

// request is a combined call's type (*recordReq, *claimReq).
type request interface{ base() *call }

// combiner merges concurrent requests into batches run by a few goroutines,
// each batch in one transaction by exec.
type combiner[R request] struct {
	s    *Store
	exec func(ctx context.Context, tx sqlcore.Tx, batch []R) error
	reqs chan R
	quit chan struct{}
	once sync.Once // starts the executors
	stop sync.Once // closes quit
	wg   sync.WaitGroup
}

func newCombiner[R request](s *Store, exec func(ctx context.Context, tx sqlcore.Tx, batch []R) error) *combiner[R] {
	return &combiner[R]{s: s, exec: exec, reqs: make(chan R), quit: make(chan struct{})}
}

// do runs r in the next batch and waits for it; the error is r's own or its
// batch's. It fails without running r after close.
func (c *combiner[R]) do(r R) error {
	c.once.Do(func() {
		for range combinerWorkers {
			c.wg.Add(1)
			go c.loop()
		}
	})
	r.base().done = make(chan struct{})
	select {
	case c.reqs <- r:
	case <-c.quit:
		return errStoreClosed
	}
	<-r.base().done
	return r.base().err
}

// run executes a batch and signals its requests. A batch that fails is run
// again one request at a time: one request's input may have failed the
// whole transaction, and only that request should see the error.
func (c *combiner[R]) run(batch []R) {
	err := c.s.runBatch(func(tx sqlcore.Tx) error { return c.exec(context.Background(), tx, batch) })
	if err != nil && len(batch) > 1 {
		for _, r := range batch {
			c.run([]R{r})
		}
		return
	}
	for _, r := range batch {
		if err != nil {
			r.base().err = err
		}
		close(r.base().done)
	}
}

func (c *combiner[R]) loop() {
	defer c.wg.Done()
	for {
		var batch []R
		select {
		case <-c.quit:
			return
		case r := <-c.reqs:
			batch = append(batch, r)
		}
	more:
		for len(batch) < maxBatch {
			select {
			case r := <-c.reqs:
				batch = append(batch, r)
			default:
				break more
			}
		}
		c.run(batch)
	}
}

// close stops the executors after their current batch. It may be called
// more than once.
func (c *combiner[R]) close() {
	c.stop.Do(func() { close(c.quit) })
	c.wg.Wait()
}

// batchAttempts is how often a batch is tried when PostgreSQL aborts it to
// break a deadlock or a serialization conflict with another process.
const batchAttempts = 3

// runBatch runs fn in a transaction, again after a deadlock or
// serialization failure.
func (s *Store) runBatch(fn func(tx sqlcore.Tx) error) error {
	ctx := context.Background()
	var err error
	for range batchAttempts {
		err = s.InTxWith(ctx, s.pg.beginBatch, fn)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || (pgErr.Code != "40P01" && pgErr.Code != "40001") {
			return err
		}
	}
	return err
}

// recordReq is one StepRecord or StepRecordFinalize call.
type recordReq struct {
	call
	p        *store.StepRecordParams
	decide   func(*store.TaskSummary) *store.TaskTransitionParams
	finalize bool

	applied []bool
	tr      *store.TransitionResult
}

func newRecordReq(p *store.StepRecordParams, decide func(*store.TaskSummary) *store.TaskTransitionParams) *recordReq {
	return &recordReq{p: p, decide: decide, finalize: decide != nil, applied: make([]bool, len(p.Outcomes))}
}

// recordBatched is StepRecord/StepRecordFinalize through the combiner.
func (s *Store) recordBatched(p *store.StepRecordParams, decide func(*store.TaskSummary) *store.TaskTransitionParams) ([]bool, *store.TransitionResult, error) {
	r := newRecordReq(p, decide)
	if err := s.records.do(r); err != nil {
		return nil, nil, err
	}
	return r.applied, r.tr, nil
}

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

func (s *Store) recordBatchTx(ctx context.Context, tx sqlcore.Tx, batch []*recordReq) error {
	type ref struct{ req, outcome int }
	n := 0
	for _, r := range batch {
		n += len(r.p.Outcomes)
	}
	cols := newRecordColumns(n)
	refs := make([]ref, 0, n)
	for ri, r := range batch {
		clear(r.applied)
		r.tr, r.err = nil, nil
		now := sqlcore.UTC(r.p.Now)
		for i, o := range r.p.Outcomes {
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
					return fmt.Errorf("record step %d: %w", o.StepID, err)
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
			cols.stepIDs, cols.owners = append(cols.stepIDs, o.StepID), append(cols.owners, r.p.Owner)
			cols.states, cols.events = append(cols.states, string(o.To)), append(cols.events, o.Event)
			cols.reasons, cols.results = append(cols.reasons, o.Reason), append(cols.results, nonEmpty(o.Results))
			cols.errs, cols.metas = append(cols.errs, nonEmpty(o.Error)), append(cols.metas, mj)
			cols.nextRetryAt, cols.backoffs = append(cols.nextRetryAt, next), append(cols.backoffs, o.BackoffRequestSeconds)
			cols.giveBacks, cols.nows = append(cols.giveBacks, giveBack), append(cols.nows, now)
			cols.completed, cols.attempts = append(cols.completed, completed), append(cols.attempts, o.Attempt)
			refs = append(refs, ref{ri, i})
		}
	}
	// The tasks to finalize, each once, in lock order.
	var fin []*recordReq
	seen := map[int64]bool{}
	for _, r := range batch {
		if r.finalize && !seen[r.p.TaskID] {
			seen[r.p.TaskID] = true
			fin = append(fin, r)
		}
	}
	slices.SortFunc(fin, func(a, b *recordReq) int { return cmp.Compare(a.p.TaskID, b.p.TaskID) })
	taskIDs := make([]int64, len(fin))
	nows := make([]time.Time, len(fin))
	for i, r := range fin {
		taskIDs[i], nows[i] = r.p.TaskID, sqlcore.UTC(r.p.Now)
	}
	if len(refs) == 0 && len(taskIDs) > 0 {
		if _, err := tx.Exec(ctx, s.Q("LockTasks"),
			taskIDs); err != nil {
			return fmt.Errorf("lock tasks: %w", err)
		}
	}
	if len(refs) > 0 {
		rs, err := tx.Query(ctx, s.Q("RecordBatch"), cols.args(taskIDs)...)
		if err != nil {
			return fmt.Errorf("record steps: %w", err)
		}
		for rs.Next() {
			var n int
			if err := rs.Scan(&n); err != nil {
				rs.Close()
				return fmt.Errorf("record steps: %w", err)
			}
			batch[refs[n].req].applied[refs[n].outcome] = true
		}
		rs.Close()
		if err := rs.Err(); err != nil {
			return fmt.Errorf("record steps: %w", err)
		}
	}

	// The finalizers: one summary query for every task, then each call's
	// decision, then one statement for every resulting transition.
	if len(taskIDs) == 0 {
		return nil
	}
	sums, err := s.summaries(ctx, tx, taskIDs, nows)
	if err != nil {
		return err
	}
	var moves []*store.TaskTransitionParams
	var movers []*recordReq
	for _, r := range batch {
		if !r.finalize {
			continue
		}
		sum := sums[r.p.TaskID]
		if sum == nil {
			sum = &store.TaskSummary{}
		}
		if tp := r.decide(sum); tp != nil {
			moves = append(moves, tp)
			movers = append(movers, r)
		}
	}
	results, errs, err := s.taskMoves(ctx, tx, moves)
	if err != nil {
		return err
	}
	for i, r := range movers {
		r.tr, r.err = results[i], errs[i]
	}
	return nil
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

// claimReq is one StepClaim or TaskStartAndClaim call.
type claimReq struct {
	call
	start *store.TaskTransitionParams // nil for StepClaim
	p     *store.StepClaimParams

	tr      *store.TransitionResult
	task    *taskertype.Task // read after the start (TaskStartAndClaim)
	claimed []*store.ClaimedStep
}

// claimBatched is StepClaim/TaskStartAndClaim through the combiner; the
// returned request holds the results.
func (s *Store) claimBatched(start *store.TaskTransitionParams, p *store.StepClaimParams) (*claimReq, error) {
	r := &claimReq{start: start, p: p}
	if err := s.claims.do(r); err != nil {
		return nil, err
	}
	return r, nil
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
		r.tr, r.task, r.claimed, r.err = nil, nil, nil, nil
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
			Names: sqlcore.FirstClaimNames(r.p, r.tr, r.task)}
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
