package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/taskertype"
)

// Operations timed by the store wrapper, one label value each.
const (
	opPing = iota
	opMigrationStatus
	opMigrateUp
	opMigrateDown
	opTaskCreate
	opTaskCreateMany
	opTaskGet
	opTaskList
	opTaskTransition
	opTaskSummary
	opTaskTransitions
	opStepList
	opStepsById
	opStepReadiness
	opStepClaim
	opStepRecord
	opStepTransition
	opStepTransitions
	opStepLeaseExpired
	opQueueClaim
	opQueueRelease
	opQueueAck
	opQueueExtend
	opQueueList
	opQueueNextRunAt
	opTaskStartAndClaim
	opStepRecordFinalize
	opStepLeaseExtend
	opTransact
	opStepFanOut
	opTaskPrune
	opTaskPruneCount
	opTaskAdmit
	opTaskConcurrency
	opCount
)

// opNames are the operation label values, by op constant.
var opNames = [opCount]string{
	opPing:               "ping",
	opMigrationStatus:    "migration_status",
	opMigrateUp:          "migrate_up",
	opMigrateDown:        "migrate_down",
	opTaskCreate:         "task_create",
	opTaskCreateMany:     "task_create_many",
	opTaskGet:            "task_get",
	opTaskList:           "task_list",
	opTaskTransition:     "task_transition",
	opTaskSummary:        "task_summary",
	opTaskTransitions:    "task_transitions",
	opStepList:           "step_list",
	opStepsById:          "steps_by_id",
	opStepReadiness:      "step_readiness",
	opStepClaim:          "step_claim",
	opStepRecord:         "step_record",
	opStepTransition:     "step_transition",
	opStepTransitions:    "step_transitions",
	opStepLeaseExpired:   "step_lease_expired",
	opQueueClaim:         "queue_claim",
	opQueueRelease:       "queue_release",
	opQueueAck:           "queue_ack",
	opQueueExtend:        "queue_extend",
	opQueueList:          "queue_list",
	opQueueNextRunAt:     "queue_next_run_at",
	opTaskStartAndClaim:  "task_start_and_claim",
	opStepRecordFinalize: "step_record_finalize",
	opStepLeaseExtend:    "step_lease_extend",
	opTransact:           "transact",
	opStepFanOut:         "step_fan_out",
	opTaskPrune:          "task_prune",
	opTaskPruneCount:     "task_prune_count",
	opTaskAdmit:          "task_admit",
	opTaskConcurrency:    "task_concurrency",
}

// timedStore times every call of the store it wraps. Its children are
// resolved once, so a call costs two clock readings and two atomic adds.
type timedStore struct {
	st       store.Store
	duration [opCount]prometheus.Observer
	errs     [opCount]prometheus.Counter
	// pruned counts the tasks TaskPrune deleted.
	pruned prometheus.Counter
}

// WrapStore returns st timing each call in tasker_db_call_duration_seconds
// (and counting errors in tasker_db_call_errors_total), by operation. The
// wrapper keeps st's optional capabilities, store.Notifier and
// store.TxTaskCreator (the PostgreSQL store has both; SQLite neither).
func (m *Metrics) WrapStore(st store.Store) store.Store {
	t := &timedStore{st: st, pruned: m.tasksPruned}
	for i, name := range opNames {
		t.duration[i] = m.dbDuration.WithLabelValues(name)
		t.errs[i] = m.dbErrors.WithLabelValues(name)
	}
	_, notifies := st.(store.Notifier)
	_, txCreates := st.(store.TxTaskCreator)
	switch {
	case notifies && txCreates:
		return &timedFullStore{timedNotifierStore{t}}
	case notifies:
		return &timedNotifierStore{t}
	case txCreates:
		return &timedTxStore{t}
	}
	return t
}

// timedTxStore is a timedStore whose store can create a task in its
// caller's transaction.
type timedTxStore struct{ *timedStore }

// TaskCreateTx implements store.TxTaskCreator.
func (t *timedTxStore) TaskCreateTx(ctx context.Context, tx pgx.Tx, p *store.TaskCreateParams) (*store.TaskCreateResult, error) {
	start := time.Now()
	v, err := t.st.(store.TxTaskCreator).TaskCreateTx(ctx, tx, p)
	t.done(opTaskCreate, start, err)
	return v, err
}

// timedFullStore is a timedStore with both optional capabilities.
type timedFullStore struct{ timedNotifierStore }

// TaskCreateTx implements store.TxTaskCreator.
func (t *timedFullStore) TaskCreateTx(ctx context.Context, tx pgx.Tx, p *store.TaskCreateParams) (*store.TaskCreateResult, error) {
	return (&timedTxStore{t.timedStore}).TaskCreateTx(ctx, tx, p)
}

// timedNotifierStore is a timedStore whose store can notify.
type timedNotifierStore struct{ *timedStore }

// Listen implements store.Notifier (not timed: it lasts as long as ctx).
func (t *timedNotifierStore) Listen(ctx context.Context) (<-chan struct{}, error) {
	return t.st.(store.Notifier).Listen(ctx)
}

// Unwrap returns the wrapped store.
func (t *timedStore) Unwrap() store.Store { return t.st }

func (t *timedStore) done(op int, start time.Time, err error) {
	t.duration[op].Observe(time.Since(start).Seconds())
	if err != nil && !errors.Is(err, context.Canceled) {
		t.errs[op].Inc()
	}
}

// Dialect implements store.Store.
func (t *timedStore) Dialect() string { return t.st.Dialect() }

// Close implements store.Store.
func (t *timedStore) Close() error { return t.st.Close() }

// Ping implements store.Store.
func (t *timedStore) Ping(ctx context.Context) error {
	start := time.Now()
	err := t.st.Ping(ctx)
	t.done(opPing, start, err)
	return err
}

// MigrationStatus implements store.Store.
func (t *timedStore) MigrationStatus(ctx context.Context) ([]store.Migration, error) {
	start := time.Now()
	v, err := t.st.MigrationStatus(ctx)
	t.done(opMigrationStatus, start, err)
	return v, err
}

// MigrateUp implements store.Store.
func (t *timedStore) MigrateUp(ctx context.Context, steps int) ([]store.Migration, error) {
	start := time.Now()
	v, err := t.st.MigrateUp(ctx, steps)
	t.done(opMigrateUp, start, err)
	return v, err
}

// MigrateDown implements store.Store.
func (t *timedStore) MigrateDown(ctx context.Context, steps int) ([]store.Migration, error) {
	start := time.Now()
	v, err := t.st.MigrateDown(ctx, steps)
	t.done(opMigrateDown, start, err)
	return v, err
}

// TaskCreate implements store.Store.
func (t *timedStore) TaskCreate(ctx context.Context, p *store.TaskCreateParams) (*store.TaskCreateResult, error) {
	start := time.Now()
	v, err := t.st.TaskCreate(ctx, p)
	t.done(opTaskCreate, start, err)
	return v, err
}

// TaskCreateMany implements store.Store.
func (t *timedStore) TaskCreateMany(ctx context.Context, ps []*store.TaskCreateParams) ([]*store.TaskCreateResult, error) {
	start := time.Now()
	v, err := t.st.TaskCreateMany(ctx, ps)
	t.done(opTaskCreateMany, start, err)
	return v, err
}

// TaskGet implements store.Store.
func (t *timedStore) TaskGet(ctx context.Context, taskID int64) (*taskertype.Task, error) {
	start := time.Now()
	v, err := t.st.TaskGet(ctx, taskID)
	t.done(opTaskGet, start, err)
	return v, err
}

// TaskList implements store.Store.
func (t *timedStore) TaskList(ctx context.Context, p *store.TaskListParams) ([]*taskertype.Task, error) {
	start := time.Now()
	v, err := t.st.TaskList(ctx, p)
	t.done(opTaskList, start, err)
	return v, err
}

// TaskTransition implements store.Store.
func (t *timedStore) TaskTransition(ctx context.Context, p *store.TaskTransitionParams) (*store.TransitionResult, error) {
	start := time.Now()
	v, err := t.st.TaskTransition(ctx, p)
	t.done(opTaskTransition, start, err)
	return v, err
}

// TaskSummary implements store.Store.
func (t *timedStore) TaskSummary(ctx context.Context, taskID int64, now time.Time) (*store.TaskSummary, error) {
	start := time.Now()
	v, err := t.st.TaskSummary(ctx, taskID, now)
	t.done(opTaskSummary, start, err)
	return v, err
}

// TaskTransitions implements store.Store.
func (t *timedStore) TaskTransitions(ctx context.Context, taskID int64) ([]*taskertype.Transition, error) {
	start := time.Now()
	v, err := t.st.TaskTransitions(ctx, taskID)
	t.done(opTaskTransitions, start, err)
	return v, err
}

// StepList implements store.Store.
func (t *timedStore) StepList(ctx context.Context, taskID int64) ([]*taskertype.Step, error) {
	start := time.Now()
	v, err := t.st.StepList(ctx, taskID)
	t.done(opStepList, start, err)
	return v, err
}

// StepsByID implements store.Store.
func (t *timedStore) StepsByID(ctx context.Context, taskID int64, ids []int64) ([]*taskertype.Step, error) {
	start := time.Now()
	v, err := t.st.StepsByID(ctx, taskID, ids)
	t.done(opStepsById, start, err)
	return v, err
}

// StepReadiness implements store.Store.
func (t *timedStore) StepReadiness(ctx context.Context, taskID int64, now time.Time) ([]*taskertype.StepReadiness, error) {
	start := time.Now()
	v, err := t.st.StepReadiness(ctx, taskID, now)
	t.done(opStepReadiness, start, err)
	return v, err
}

// StepClaim implements store.Store.
func (t *timedStore) StepClaim(ctx context.Context, p *store.StepClaimParams) ([]*store.ClaimedStep, error) {
	start := time.Now()
	v, err := t.st.StepClaim(ctx, p)
	t.done(opStepClaim, start, err)
	return v, err
}

// StepRecord implements store.Store.
func (t *timedStore) StepRecord(ctx context.Context, p *store.StepRecordParams) ([]bool, error) {
	start := time.Now()
	v, err := t.st.StepRecord(ctx, p)
	t.done(opStepRecord, start, err)
	return v, err
}

// StepTransition implements store.Store.
func (t *timedStore) StepTransition(ctx context.Context, p *store.StepTransitionParams) (*store.StepTransitionResult, error) {
	start := time.Now()
	v, err := t.st.StepTransition(ctx, p)
	t.done(opStepTransition, start, err)
	return v, err
}

// StepTransitions implements store.Store.
func (t *timedStore) StepTransitions(ctx context.Context, taskID int64) ([]*taskertype.Transition, error) {
	start := time.Now()
	v, err := t.st.StepTransitions(ctx, taskID)
	t.done(opStepTransitions, start, err)
	return v, err
}

// StepLeaseExpired implements store.Store.
func (t *timedStore) StepLeaseExpired(ctx context.Context, now time.Time, limit int) ([]*taskertype.Step, error) {
	start := time.Now()
	v, err := t.st.StepLeaseExpired(ctx, now, limit)
	t.done(opStepLeaseExpired, start, err)
	return v, err
}

// QueueClaim implements store.Store.
func (t *timedStore) QueueClaim(ctx context.Context, p *store.QueueClaimParams) ([]*store.QueueEntry, error) {
	start := time.Now()
	v, err := t.st.QueueClaim(ctx, p)
	t.done(opQueueClaim, start, err)
	return v, err
}

// QueueRelease implements store.Store.
func (t *timedStore) QueueRelease(ctx context.Context, taskID int64, owner string, runAt time.Time) error {
	start := time.Now()
	err := t.st.QueueRelease(ctx, taskID, owner, runAt)
	t.done(opQueueRelease, start, err)
	return err
}

// QueueAck implements store.Store.
func (t *timedStore) QueueAck(ctx context.Context, taskID int64, owner string) error {
	start := time.Now()
	err := t.st.QueueAck(ctx, taskID, owner)
	t.done(opQueueAck, start, err)
	return err
}

// QueueExtend implements store.Store.
func (t *timedStore) QueueExtend(ctx context.Context, owner string, taskIDs []int64, until time.Time) (int, error) {
	start := time.Now()
	v, err := t.st.QueueExtend(ctx, owner, taskIDs, until)
	t.done(opQueueExtend, start, err)
	return v, err
}

// QueueList implements store.Store.
func (t *timedStore) QueueList(ctx context.Context, limit int) ([]*store.QueueEntry, error) {
	start := time.Now()
	v, err := t.st.QueueList(ctx, limit)
	t.done(opQueueList, start, err)
	return v, err
}

// QueueNextRunAt implements store.Store.
func (t *timedStore) QueueNextRunAt(ctx context.Context, after time.Time) (*time.Time, error) {
	start := time.Now()
	v, err := t.st.QueueNextRunAt(ctx, after)
	t.done(opQueueNextRunAt, start, err)
	return v, err
}

// TaskStartAndClaim implements store.Store.
func (t *timedStore) TaskStartAndClaim(ctx context.Context, start *store.TaskTransitionParams, p *store.StepClaimParams) (*store.TransitionResult, *taskertype.Task, []*store.ClaimedStep, error) {
	begin := time.Now()
	tr, task, claimed, err := t.st.TaskStartAndClaim(ctx, start, p)
	t.done(opTaskStartAndClaim, begin, err)
	return tr, task, claimed, err
}

// Transact implements store.Store. The transaction is timed as a whole,
// under the operation its bulk operations make it (the engine's batches):
// task_start_and_claim for claims, step_record_finalize for records with
// the finalizer, step_record for records alone, transact otherwise.
func (t *timedStore) Transact(ctx context.Context, fn func(tx store.Tx) error) error {
	start := time.Now()
	var seen txOps
	err := t.st.Transact(ctx, func(tx store.Tx) error { return fn(&seenTx{Tx: tx, seen: &seen}) })
	op := opTransact
	switch {
	case seen.claim:
		op = opTaskStartAndClaim
	case seen.summary:
		op = opStepRecordFinalize
	case seen.record:
		op = opStepRecord
	}
	t.done(op, start, err)
	return err
}

// txOps notes the kinds of bulk operation a transaction ran.
type txOps struct{ claim, summary, record bool }

// seenTx is a store.Tx that notes the operations it runs.
type seenTx struct {
	store.Tx
	seen *txOps
}

// StepRecordMany implements store.Tx.
func (s *seenTx) StepRecordMany(ctx context.Context, ps *store.StepRecordManyParams) ([][]bool, error) {
	s.seen.record = true
	return s.Tx.StepRecordMany(ctx, ps)
}

// TaskSummaries implements store.Tx.
func (s *seenTx) TaskSummaries(ctx context.Context, taskIDs []int64, nows []time.Time) (map[int64]*store.TaskSummary, error) {
	s.seen.summary = true
	return s.Tx.TaskSummaries(ctx, taskIDs, nows)
}

// TaskStartAndClaimMany implements store.Tx.
func (s *seenTx) TaskStartAndClaimMany(ctx context.Context, ps []*store.StartAndClaimParams) ([]*store.StartAndClaimResult,
	error) {
	s.seen.claim = true
	return s.Tx.TaskStartAndClaimMany(ctx, ps)
}

// StepLeaseExtend implements store.Store.
func (t *timedStore) StepLeaseExtend(ctx context.Context, owner string, stepIDs []int64, lease time.Duration) (int, time.Time, error) {
	start := time.Now()
	n, until, err := t.st.StepLeaseExtend(ctx, owner, stepIDs, lease)
	t.done(opStepLeaseExtend, start, err)
	return n, until, err
}

// StepFanOut implements store.FanOutStore.
func (t *timedStore) StepFanOut(ctx context.Context, p *store.StepFanOutParams) (*store.StepFanOutResult, error) {
	start := time.Now()
	res, err := t.st.StepFanOut(ctx, p)
	t.done(opStepFanOut, start, err)
	return res, err
}

var (
	_ store.Store         = (*timedStore)(nil)
	_ store.Notifier      = (*timedNotifierStore)(nil)
	_ store.TxTaskCreator = (*timedTxStore)(nil)
	_ store.Notifier      = (*timedFullStore)(nil)
	_ store.TxTaskCreator = (*timedFullStore)(nil)
)

// TaskPrune implements store.Store.
func (t *timedStore) TaskPrune(ctx context.Context, p *store.TaskPruneParams) (*store.TaskPruneResult, error) {
	start := time.Now()
	v, err := t.st.TaskPrune(ctx, p)
	t.done(opTaskPrune, start, err)
	if v != nil {
		t.pruned.Add(float64(v.Deleted))
	}
	return v, err
}

// TaskPruneCount implements store.Store.
func (t *timedStore) TaskPruneCount(ctx context.Context, p *store.TaskPruneParams) (int, error) {
	start := time.Now()
	v, err := t.st.TaskPruneCount(ctx, p)
	t.done(opTaskPruneCount, start, err)
	return v, err
}

// TaskAdmit implements store.Store.
func (t *timedStore) TaskAdmit(ctx context.Context, p *store.TaskAdmitParams) (*store.AdmitResult, error) {
	start := time.Now()
	v, err := t.st.TaskAdmit(ctx, p)
	t.done(opTaskAdmit, start, err)
	return v, err
}

// TaskConcurrency implements store.Store.
func (t *timedStore) TaskConcurrency(ctx context.Context, taskID int64) (*store.ConcurrencyState, error) {
	start := time.Now()
	v, err := t.st.TaskConcurrency(ctx, taskID)
	t.done(opTaskConcurrency, start, err)
	return v, err
}
