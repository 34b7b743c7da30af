// Package store defines the storage seam between the orchestration engine and
// a database. Each database has its own package behind it:
// internal/store/postgres (pgx v5) and internal/store/sqlite (the embedded
// default, modernc.org/sqlite), sharing their common Go through
// internal/store/sqlcore; both must pass storetest.Exercise. Optional
// capabilities (Notifier, TxTaskCreator) are separate interfaces, checked
// at run time. The interface changes freely: it is not
// a public API. DO NOT IMPLEMENT outside this module.
//
// The store applies state changes that the engine decided (internal/
// statemachine decides; the store guards each UPDATE with the allowed source
// states). Every state change appends a transition row and, for tasks, writes
// the durable enqueue record in the same transaction. The engine batches the
// calls of many tasks into one transaction of the transaction executor
// (Store.Transact), whose bulk operations (Tx) write each kind of row of
// the whole batch with one statement; what a task's summary means is
// decided by the engine between them, never inside the store.
package store

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/taskertype"
)

// Store is the storage seam. Methods take ctx first and one params struct.
type Store interface {
	// Dialect returns "postgres" or "sqlite".
	Dialect() string
	// Close releases the connections.
	Close() error
	// Ping checks the database is reachable.
	Ping(ctx context.Context) error

	// MigrationStatus lists every known migration and whether it is applied.
	MigrationStatus(ctx context.Context) ([]Migration, error)
	// MigrateUp applies pending migrations (all when steps <= 0).
	MigrateUp(ctx context.Context, steps int) ([]Migration, error)
	// MigrateDown reverts applied migrations, newest first (all when steps <= 0).
	MigrateDown(ctx context.Context, steps int) ([]Migration, error)

	// TaskCreate writes a task, its steps, edges, initial transitions and its
	// first enqueue record in one transaction. With an idempotency key that
	// already exists it writes nothing and returns the existing task with
	// Created false.
	TaskCreate(ctx context.Context, p *TaskCreateParams) (*TaskCreateResult, error)
	// TaskCreateMany is TaskCreate for many tasks in one transaction, each
	// kind of row of all of them written together (a few statements in
	// all, not a few per task). Results are in the order of ps. Each
	// task's idempotency key is honoured as by TaskCreate; a params with
	// the same key as an earlier one in ps gets that one's task (Created
	// false). When any task fails (an unknown parent step) none is written.
	TaskCreateMany(ctx context.Context, ps []*TaskCreateParams) ([]*TaskCreateResult, error)
	// TaskGet returns one task (taskertype.TaskNotFoundError when missing).
	TaskGet(ctx context.Context, taskID int64) (*taskertype.Task, error)
	// TaskList returns tasks matching the filters, newest first.
	TaskList(ctx context.Context, p *TaskListParams) ([]*taskertype.Task, error)
	// TaskTransition moves a task from one of p.From to p.To, appends the
	// transition and applies p.Queue, in one transaction. When the task is in
	// none of p.From nothing is written and Changed is false.
	TaskTransition(ctx context.Context, p *TaskTransitionParams) (*TransitionResult, error)
	// TaskSummary aggregates the task's steps for the finalizer.
	TaskSummary(ctx context.Context, taskID int64, now time.Time) (*TaskSummary, error)
	// TaskTransitions returns the task's audit trail in order.
	TaskTransitions(ctx context.Context, taskID int64) ([]*taskertype.Transition, error)

	// StepList returns every step of a task with its parents' names.
	StepList(ctx context.Context, taskID int64) ([]*taskertype.Step, error)
	// StepsByID returns the steps of a task among ids, in id order, without
	// their parents' names; ids of other tasks or of no step are skipped.
	StepsByID(ctx context.Context, taskID int64, ids []int64) ([]*taskertype.Step, error)
	// StepReadiness is viable-step discovery: one set-based query returning,
	// for every step of the task, its readiness and the facts behind it.
	StepReadiness(ctx context.Context, taskID int64, now time.Time) ([]*taskertype.StepReadiness, error)
	// StepClaim atomically claims up to p.Limit ready steps of a task under a
	// lease, counting an attempt for each, and returns them with their
	// parents' results.
	StepClaim(ctx context.Context, p *StepClaimParams) ([]*ClaimedStep, error)
	// TaskStartAndClaim applies the task transition start and, when the
	// task is then in start.To (moved now or already there), claims steps
	// like StepClaim, in one transaction. When the task is in another state
	// nothing is claimed and the result reports that state. It also returns
	// the task as it is after the start, so that a coordinator needs no read
	// of its own; a p.Limit of 0 claims up to the task's max_parallel_steps.
	TaskStartAndClaim(ctx context.Context, start *TaskTransitionParams, p *StepClaimParams) (*TransitionResult,
		*taskertype.Task, []*ClaimedStep, error)
	// StepRecord applies many attempt outcomes in one transaction. An outcome
	// whose step is no longer in progress under p.Owner's lease is skipped
	// (the attempt was rescued or resolved elsewhere); Applied says which.
	// The one exception is a late success (StepOutcome.Attempt): a step the
	// rescuer failed for that same attempt (lease expired) and that no later
	// attempt has claimed since still takes it.
	StepRecord(ctx context.Context, p *StepRecordParams) ([]bool, error)
	// StepTransition applies an operator's (or rescuer's) transition to some
	// steps of a task in one transaction, optionally with a task transition
	// and queue change in the same transaction.
	StepTransition(ctx context.Context, p *StepTransitionParams) (*StepTransitionResult, error)
	// StepLeaseExtend pushes the lease of steps still held by owner to lease
	// after the database's clock at the statement, and returns the new end
	// of the lease and how many steps it extended.
	StepLeaseExtend(ctx context.Context, owner string, stepIDs []int64, lease time.Duration) (int, time.Time, error)
	// StepLeaseExpired lists in-progress steps whose lease ended before now;
	// the zero now means the database's clock (the clock leases are granted
	// and extended by).
	StepLeaseExpired(ctx context.Context, now time.Time, limit int) ([]*taskertype.Step, error)
	// StepTransitions returns the audit trail of every step of a task in order.
	StepTransitions(ctx context.Context, taskID int64) ([]*taskertype.Transition, error)

	// QueueClaim leases up to p.Limit due enqueue records.
	QueueClaim(ctx context.Context, p *QueueClaimParams) ([]*QueueEntry, error)
	// QueueRelease hands a leased record back, due at runAt (attempt counted).
	QueueRelease(ctx context.Context, taskID int64, owner string, runAt time.Time) error
	// QueueAck deletes the task's record if owner still holds its lease.
	QueueAck(ctx context.Context, taskID int64, owner string) error
	// QueueExtend pushes the lease of records still held by owner.
	QueueExtend(ctx context.Context, owner string, taskIDs []int64, until time.Time) (int, error)
	// QueueList lists enqueue records (for operators and the event re-publisher).
	QueueList(ctx context.Context, limit int) ([]*QueueEntry, error)
	// QueueNextRunAt returns the earliest run_at later than after of an
	// unleased record (nil when none): when a runner whose claim at after
	// came back short has work next. Records due by after are left out:
	// such a record was claimable, so it is leased or about to be (the
	// records of running tasks are leased and due, and skipping them in
	// the run_at index was a scan of every running task).
	QueueNextRunAt(ctx context.Context, after time.Time) (*time.Time, error)

	// Transact is the transaction executor: it runs fn in one transaction
	// and commits when fn returns nil (rolls back otherwise). When the
	// database aborts the transaction to break a deadlock or a
	// serialization conflict with another process it runs fn again, a few
	// times: fn must set its results afresh on every run. ctx bounds the
	// whole transaction.
	Transact(ctx context.Context, fn func(tx Tx) error) error

	// FanOutStore expands fan-out steps (dynamic fan-out, see below).
	FanOutStore

	// --- Retention (issue 19 item 8) ---

	// TaskPrune deletes, in one transaction, up to p.Limit finished tasks
	// that are due (see TaskPruneParams), the oldest due first, with every
	// row keyed by them: steps, edges, task and step transitions, the
	// enqueue record; their idempotency keys are free again. One pruner
	// at a time: when another one is deleting, it deletes nothing and
	// reports Busy.
	TaskPrune(ctx context.Context, p *TaskPruneParams) (*TaskPruneResult, error)
	// TaskPruneCount counts the tasks TaskPrune would delete, p.Limit
	// aside (a dry run).
	TaskPruneCount(ctx context.Context, p *TaskPruneParams) (int, error)
	// --- Concurrency keys (docs/flow-control.md#concurrency-keys) ---

	// TaskAdmit is the admission of a task with a concurrency key in a
	// transaction of its own; the engine uses it for a task its claim
	// batch found at its key's limit (Tx.ConcurrencyLockMany admits the
	// others), where the policy applies. In one
	// transaction, serialized per key, it counts the running tasks with
	// the task's key (started and not finished: in_progress or
	// waiting_for_retry) and, when a pending task is under its limit,
	// applies p.Start; at the limit it applies the task's policy: park
	// (the task stays pending and its queue record is rewritten by
	// p.Park), cancel the task itself, or cancel the oldest running task
	// with the key and start this one. A task without a key, or not
	// pending, is left alone (AdmitFree).
	TaskAdmit(ctx context.Context, p *TaskAdmitParams) (*AdmitResult, error)
	// TaskConcurrency returns the task's key, limit and policy and how
	// many tasks with the key are running (nil when it has no key).
	TaskConcurrency(ctx context.Context, taskID int64) (*ConcurrencyState, error)
}

// Notifier is an optional capability: a store that can wake idle runners
// (PostgreSQL LISTEN/NOTIFY). Stores without it are polled.
type Notifier interface {
	// Listen delivers a value whenever an enqueue record was written by any
	// process, until ctx ends.
	Listen(ctx context.Context) (<-chan struct{}, error)
}

// QueueAnnouncer is an optional capability of a Notifier store whose
// notifications are sent by the application rather than by the database
// (PostgreSQL since migration 0019): AnnounceQueue, called after the
// commit of any write that made an enqueue record available, wakes the
// listening runners of every process, debounced. It does not block. The
// store announces its own TaskCreate, TaskCreateMany and QueueRelease; the
// engine announces the rest with its enqueue requests.
type QueueAnnouncer interface {
	AnnounceQueue()
}

// TxTaskCreator is an optional capability: a store that can create a task
// inside a transaction its caller began and commits (transactional
// enqueue: the task exists if and only if the caller's own writes commit).
// PostgreSQL has it; SQLite does not.
type TxTaskCreator interface {
	// TaskCreateTx is TaskCreate inside tx. An idempotency key that already
	// exists returns that task (Created false); one inserted concurrently by
	// another transaction fails tx with a unique violation, which the caller
	// sees as an error (its transaction is then aborted).
	TaskCreateTx(ctx context.Context, tx pgx.Tx, p *TaskCreateParams) (*TaskCreateResult, error)
}

// Migration is one schema migration.
type Migration struct {
	Version   int
	Name      string
	Applied   bool
	AppliedAt *time.Time
}

// QueueOpKind says what a state change does to the task's enqueue record.
type QueueOpKind int

const (
	// QueueNone leaves the record alone.
	QueueNone QueueOpKind = iota
	// QueueUpsert writes (or replaces, clearing any lease) the task's record.
	QueueUpsert
	// QueueDelete removes the task's record.
	QueueDelete
)

// QueueOp is the enqueue side of a state change.
type QueueOp struct {
	Kind      QueueOpKind
	Operation string // "enqueue" or "reenqueue"
	RunAt     time.Time
	Priority  int
	Reason    string
}

// StepSpec is one step to create.
type StepSpec struct {
	Name           string
	HandlerClass   string
	HandlerConfig  json.RawMessage
	Retryable      bool
	MaxAttempts    int
	TimeoutSeconds int
	Skippable      bool
	Inputs         json.RawMessage
	// Bypassed steps are created resolved_manually.
	Bypassed bool
	// Parents are names of earlier steps in the same request.
	Parents []string
}

// TaskCreateParams is the input of TaskCreate.
type TaskCreateParams struct {
	Namespace, Name, Version string
	Description              string
	TemplateJSON             json.RawMessage
	Context                  json.RawMessage
	Initiator                string
	SourceSystem             string
	Reason                   string
	Tags                     []string
	Priority                 int
	IdempotencyKey           string
	// IdempotencyWindow, when > 0, is how long IdempotencyKey deduplicates:
	// a task holding the key that was created longer ago than this before
	// Now gives the key up to the new task, which is created.
	IdempotencyWindow time.Duration
	// RunAt, when set, is when a delayed task is due: stored with the task
	// (Task.RunAt). Queue.RunAt says when its enqueue record is due.
	RunAt            *time.Time
	MaxParallelSteps int
	Steps            []StepSpec
	Actor            string
	Now              time.Time
	Queue            QueueOp
	// SkipStepsResult leaves TaskCreateResult.Steps nil instead of reading
	// the steps back (the engine does not need them).
	SkipStepsResult bool
	// Retention and RetentionFailed are how long the task is kept once it
	// finished complete, cancelled or resolved manually, and once it failed
	// (error), in whole seconds, stored with it (Task.RetentionSeconds,
	// RetentionFailedSeconds); nil keeps it for ever.
	Retention, RetentionFailed *time.Duration
	// Concurrency, when set, is the task's concurrency key with its
	// template's limit and policy (see TaskAdmit).
	Concurrency *TaskConcurrency
}

// TaskCreateResult is the output of TaskCreate.
type TaskCreateResult struct {
	Task    *taskertype.Task
	Steps   []*taskertype.Step
	Created bool
}

// TaskListParams filters TaskList. Zero values mean "any".
type TaskListParams struct {
	States        []taskertype.TaskState
	Namespace     string
	Name          string
	CreatedAfter  *time.Time
	CreatedBefore *time.Time
	// AfterID pages: only tasks with a smaller id (newest first).
	AfterID int64
	Limit   int
}

// TaskTransitionParams is the input of TaskTransition.
type TaskTransitionParams struct {
	TaskID int64
	From   []taskertype.TaskState
	To     taskertype.TaskState
	Event  string
	Reason string
	Actor  string
	Meta   json.RawMessage
	Now    time.Time
	Queue  QueueOp
}

// TransitionResult reports the outcome of a guarded transition.
type TransitionResult struct {
	Changed bool
	// State is the state after the call (the unchanged state when Changed is false).
	State taskertype.TaskState
	// From is the state the task left, and Seq the number of its
	// transitions after this one (when Changed; TaskStartAndClaim only).
	From taskertype.TaskState
	Seq  int
}

// TaskSummary counts a task's steps by state, for the finalizer.
type TaskSummary struct {
	Total           int
	Pending         int
	InProgress      int
	WaitingForRetry int
	Complete        int // complete + resolved_manually + skipped
	Error           int
	Cancelled       int
	Ready           int // steps that could be claimed now
	EarliestRetryAt *time.Time
}

// StepClaimParams is the input of StepClaim.
type StepClaimParams struct {
	TaskID int64
	Owner  string
	Limit  int
	// Now is the claim's time (readiness, last_attempted_at, the claim
	// transition) and LeaseUntil the end of the lease. With Lease set both
	// are ignored: the database's clock when the claim statement runs is
	// the claim's time and the lease ends Lease after it. A lease counted
	// from a time taken before the statement (which may wait for a
	// connection, a batch or a database restart) would be partly spent
	// before it was granted.
	Now        time.Time
	LeaseUntil time.Time
	Lease      time.Duration
	// Names, when not empty, restricts the claim to the ready steps of
	// these names: the coordinator's claim after a short claim, when it
	// knows which steps its results unlocked. Found by name, so the claim
	// does not check the readiness of every pending step.
	Names []string
	// FirstNames, when set and the start of TaskStartAndClaim is the
	// task's first (its second transition, out of pending: none of its
	// steps has run), names the steps that can be ready: the template's
	// roots. The first claim then looks only at those, as with Names,
	// instead of checking every pending step (44 ms for a 10,000-wide
	// fan-out, whose root is its only ready step). It returns nil when it
	// cannot tell.
	FirstNames func(*taskertype.Task) []string
}

// FirstClaimNames is the name filter of the claim that follows a task's
// start (tr, task as it is after it): p.Names, or, when this was the
// task's first start (transition 1 created it pending, 2 starts it), the
// names p.FirstNames gives. A task yielded or retried back to pending has
// run steps, so any step may be ready. (An operator may resolve a step of
// a task not yet started: its children are then ready without being
// roots. The finalizer counts them ready and the coordinator claims them
// with a general claim.)
func (p *StepClaimParams) FirstClaimNames(tr *TransitionResult, task *taskertype.Task) []string {
	if len(p.Names) > 0 || p.FirstNames == nil || tr == nil || !tr.Changed || tr.From != taskertype.TaskStatePending ||
		tr.Seq != 2 {
		return p.Names
	}
	return p.FirstNames(task)
}

// ClaimedStep is a step claimed for one attempt.
type ClaimedStep struct {
	Step              *taskertype.Step
	DependencyResults map[string]json.RawMessage
}

// StepOutcome is the result of one attempt, with the target state decided
// by the engine.
type StepOutcome struct {
	StepID      int64
	To          taskertype.StepState
	Event       string
	Results     json.RawMessage // on success
	Error       json.RawMessage // on failure
	NextRetryAt *time.Time
	// BackoffRequestSeconds is the server-requested delay, if any.
	BackoffRequestSeconds *int
	// GiveBackAttempt undoes the attempt count (graceful release).
	GiveBackAttempt bool
	Reason          string
	// Attempt is the attempt the outcome is the result of (0: unknown). A
	// success for it is also applied to a step the rescuer failed for this
	// attempt (lease expired, now waiting_for_retry) before any later
	// attempt claimed it: the work was done, and nothing has started it
	// again.
	Attempt int
}

// StepRecordParams is the input of StepRecord.
type StepRecordParams struct {
	TaskID   int64
	Owner    string
	Now      time.Time
	Outcomes []StepOutcome
}

// StepTransitionParams moves steps of one task (by id) from one of From to To.
type StepTransitionParams struct {
	TaskID        int64
	StepIDs       []int64
	From          []taskertype.StepState
	To            taskertype.StepState
	Event         string
	Reason        string
	Actor         string
	Now           time.Time
	ResetAttempts bool
	// Error, when set, is stored as the step's last error (rescue).
	Error       json.RawMessage
	NextRetryAt *time.Time
	// RequireLeaseExpiredBefore, when set, only moves steps whose lease ended
	// before this time (the rescuer's guard against a live runner); the zero
	// time means the database's clock at the statement.
	RequireLeaseExpiredBefore *time.Time
	// Task, when set, is applied in the same transaction (after the steps).
	Task *TaskTransitionParams
	// Queue is applied to the task's enqueue record when any step moved.
	Queue QueueOp
}

// StepTransitionResult reports which steps moved and the task's transition.
type StepTransitionResult struct {
	Moved []int64
	Task  *TransitionResult
}

// QueueClaimParams is the input of QueueClaim.
type QueueClaimParams struct {
	Owner      string
	Limit      int
	Now        time.Time
	LeaseUntil time.Time
	// DueBefore, when set, claims only records with run_at <= DueBefore
	// (a grace period before now); zero means Now.
	DueBefore time.Time
	// Start asks the store to also start the claimed tasks a coordinator
	// could start (waiting_for_retry, or pending: without a concurrency
	// key at once, with one when its key is under its limit, counted as
	// the coordinator's admission counts it): the task moves to
	// in_progress at Now with a "start" transition (actor Owner, reason
	// StartReason), as TaskTransition would write it. The store may start
	// none (SQLite does not); QueueEntry.Started says which it started. A
	// pending task with a key it did not start is left to its
	// coordinator's admission, which applies the key's policy. When the
	// claim committed but starting the tasks with a key failed, QueueClaim
	// returns the entries (those unstarted) and the error.
	Start       bool
	StartReason string
	// DatabaseClock stamps a start made by admission (a task with a
	// concurrency key) with the database's clock after the admission's
	// locks, so that it never precedes the finish that made room for it;
	// the engine sets it on the system clock. Otherwise the stamp is Now
	// plus the time the claim has taken (a test's fake clock).
	DatabaseClock bool
}

// QueueEntry is one durable enqueue record.
type QueueEntry struct {
	TaskID         int64
	Operation      string
	RunAt          time.Time
	Priority       int
	Attempts       int
	Reason         string
	LeaseOwner     string
	LeaseExpiresAt *time.Time
	CreatedAt      time.Time
	// Started is set when the claim also started the task
	// (QueueClaimParams.Start).
	Started *QueueStarted
}

// QueueStarted is the start a claim made (QueueClaimParams.Start): the
// start transition's result and the task after it, what TaskStartAndClaim
// returns for a start.
type QueueStarted struct {
	Transition *TransitionResult
	Task       *taskertype.Task
}

// --- The transaction executor's bulk operations (Store.Transact) ---

// Tx is one transaction of Store.Transact. Each of its operations writes
// or reads the rows of many calls (of many tasks) with one statement per
// kind of row, however many tasks are in it: the engine's batcher composes
// them (record, summarize, decide, transition) and makes the decisions
// itself. A Tx is used by one goroutine and only inside fn.
type Tx interface {
	// StepRecordMany applies the outcomes of each record as StepRecord
	// does; applied[i][j] reports outcome j of ps.Records[i]. It also locks
	// the rows of the tasks ps.Lock until the transaction ends (in id
	// order, before anything reads their steps), so that two transactions
	// finalizing one task take turns and the later one sees the earlier
	// one's results.
	StepRecordMany(ctx context.Context, ps *StepRecordManyParams) ([][]bool, error)
	// TaskSummaries is TaskSummary for each of taskIDs (distinct) at the
	// time of the same index in nows, as seen inside the transaction. A task
	// without steps (or without a row) has the zero summary.
	TaskSummaries(ctx context.Context, taskIDs []int64, nows []time.Time) (map[int64]*TaskSummary, error)
	// TaskTransitionMany applies guarded task transitions as TaskTransition
	// does, in order. results[i] reports ps[i]; errs[i] is a
	// taskertype.TaskNotFoundError for a task that does not exist (the
	// transaction goes on). The returned error fails the transaction.
	TaskTransitionMany(ctx context.Context, ps []*TaskTransitionParams) ([]*TransitionResult, []error, error)
	// TaskStartAndClaimMany runs each claim as TaskStartAndClaim does (a
	// claim without Start as StepClaim does). Several claims of one task
	// take distinct steps. results[i].Err is a per-claim error
	// (taskertype.TaskNotFoundError); the returned error fails the
	// transaction.
	TaskStartAndClaimMany(ctx context.Context, ps []*StartAndClaimParams) ([]*StartAndClaimResult, error)
	// ConcurrencyLockMany is admission inside a batch (see
	// ConcurrencyLocked): of taskIDs, the tasks that are pending and have a
	// concurrency key; the key of each is locked until the transaction
	// ends, serialized with every other admission of the key (batched or
	// TaskAdmit) on any process, keys in one order so that batches never
	// deadlock; then, in a statement of its own taken after the locks (it
	// sees every admission of the keys committed before), the running
	// tasks (in_progress or waiting_for_retry) of those keys, read as
	// TaskAdmit reads them. The engine decides which tasks to start; the
	// starts it applies in the same transaction (TaskStartAndClaimMany)
	// are admitted.
	ConcurrencyLockMany(ctx context.Context, taskIDs []int64) (*ConcurrencyLocked, error)
	// HandlerAdmit is HandlerLimiter.HandlerAdmit inside the transaction:
	// the engine admits the steps of a limited handler class that its claim
	// batch claimed, in the claim's transaction, one call per class in
	// class order (the class's lock is held until the transaction ends).
	HandlerAdmit(ctx context.Context, p *HandlerAdmitParams) (*HandlerAdmitResult, error)
}

// ConcurrencyLocked is what Tx.ConcurrencyLockMany read.
type ConcurrencyLocked struct {
	// Tasks are the pending tasks with a key, by id (when read, before the
	// lock: one started meanwhile is among Running).
	Tasks map[int64]*TaskConcurrency
	// Running are the running tasks of each key of Tasks, oldest first,
	// counted after the lock.
	Running map[string][]int64
}

// StepRecordManyParams is the input of Tx.StepRecordMany.
type StepRecordManyParams struct {
	Records []*StepRecordParams
	// Lock are tasks whose rows are locked (typically the ones about to be
	// summarized and finalized).
	Lock []int64
}

// StartAndClaimParams is one claim of Tx.TaskStartAndClaimMany.
type StartAndClaimParams struct {
	// Start, when set, is applied first, as by TaskStartAndClaim.
	Start *TaskTransitionParams
	Claim *StepClaimParams
}

// StartAndClaimResult is the outcome of one StartAndClaimParams.
type StartAndClaimResult struct {
	// Transition and Task are set for a claim with a Start (see
	// TaskStartAndClaim).
	Transition *TransitionResult
	Task       *taskertype.Task
	Claimed    []*ClaimedStep
	// Err is this claim's own failure (its task does not exist).
	Err error
}

// ---- Dynamic fan-out (issue 19 item 4) ----

// StepFanOutParams expands a fan-out placeholder step (see
// Store.StepFanOut): the placeholder StepID, in progress under Owner's
// lease for attempt Attempt, gets Children, each depending on every parent
// of the placeholder, and the placeholder depends on each child and goes
// back to pending with its attempt given back.
type StepFanOutParams struct {
	TaskID  int64
	StepID  int64
	Owner   string
	Attempt int
	// Children are the steps to insert (their Parents are ignored: each
	// child's parents are the placeholder's).
	Children []StepSpec
	Event    string // the placeholder's transition event ("expand")
	Reason   string
	Actor    string
	Now      time.Time
}

// StepFanOutResult reports an expansion.
type StepFanOutResult struct {
	// Applied is false when the placeholder was no longer in progress under
	// the owner's lease for that attempt: nothing was written.
	Applied bool
	// ChildIDs are the new steps' ids, in the order of the params' Children.
	ChildIDs []int64
}

// FanOutStore is the storage side of dynamic fan-out, part of Store (both
// databases have it), declared apart to keep its edits in one block.
type FanOutStore interface {
	// StepFanOut writes an expansion in one transaction: the child steps,
	// their initial transitions, the edges from the placeholder's parents to
	// each child and from each child to the placeholder, and the
	// placeholder's move back to pending. All or nothing: a crash leaves
	// either no child or every child, and a placeholder no longer held by
	// p.Owner is not expanded.
	StepFanOut(ctx context.Context, p *StepFanOutParams) (*StepFanOutResult, error)
}

// --- Retention (issue 19 item 8) ---

// TaskPruneParams selects the finished tasks TaskPrune deletes.
type TaskPruneParams struct {
	// Now: a task is due when its Task.KeepUntil (its completion plus its
	// retention) is at or before Now.
	Now time.Time
	// FinishedBefore, when set, replaces every task's own retention: a
	// task is due when it finished before this time, whatever its
	// retention (kept for ever included). Now is then unused.
	FinishedBefore *time.Time
	// Limit bounds the tasks one call deletes, in one transaction
	// (at least 1).
	Limit int
}

// TaskPruneResult is what a TaskPrune call did.
type TaskPruneResult struct {
	// Deleted counts the tasks deleted.
	Deleted int
	// Busy reports that another pruner was deleting: nothing was deleted.
	Busy bool
}

// --- Concurrency keys ---

// TaskConcurrency is a task's concurrency key (computed from its context
// at creation) with its template's limit and policy.
type TaskConcurrency struct {
	Key    string
	Limit  int
	Policy string // template.PolicyQueue, PolicyCancelNewest or PolicyCancelOldest
}

// ConcurrencyState is a task's concurrency key and the running tasks with
// it, as TaskConcurrency reads them.
type ConcurrencyState struct {
	TaskConcurrency
	// Running counts the tasks with the key that are running now.
	Running int
}

// AdmitOutcome says what TaskAdmit did.
type AdmitOutcome int

const (
	// AdmitFree: the task has no key or is not pending: nothing was done.
	AdmitFree AdmitOutcome = iota
	// AdmitStarted: the key was under its limit; the task was started.
	AdmitStarted
	// AdmitParked: the key is at its limit (policy queue); the task stays
	// pending and its queue record was rewritten by Park.
	AdmitParked
	// AdmitCancelledNewest: the key is at its limit (policy
	// cancel_newest); the task and its steps were cancelled.
	AdmitCancelledNewest
	// AdmitReplacedOldest: the key was at its limit (policy
	// cancel_oldest); the oldest running task with the key was cancelled
	// (with its unfinished steps) and the task started.
	AdmitReplacedOldest
)

// TaskAdmitParams is the input of TaskAdmit.
type TaskAdmitParams struct {
	TaskID int64
	// Start is the start transition applied when the task is admitted.
	Start *TaskTransitionParams
	// Park is the queue record written for a task left pending at the
	// limit (a wake from a finishing task makes it due earlier); the
	// store sets its priority to the task's.
	Park QueueOp
	// Clock, when set, gives the time that stamps the start and the
	// cancellations, read once the key is locked and its running tasks
	// counted: a start that waited for a finish is never stamped before
	// it (the transitions audit shows the key's intervals apart).
	Clock func() time.Time
	// Cancel is the cancellation a policy applies (to this task or the
	// oldest running one), as a template: the store fills in the task id,
	// its step ids, the reason and Cancel.Task's task id and reason.
	Cancel *StepTransitionParams
}

// AdmitResult is the output of TaskAdmit.
type AdmitResult struct {
	Outcome AdmitOutcome
	// State is the task's state after the call.
	State taskertype.TaskState
	// Concurrency is the task's key, limit and policy and the running
	// tasks with the key counted before the decision (nil: no key).
	Concurrency *ConcurrencyState
	// Start is the start transition's result (AdmitStarted,
	// AdmitReplacedOldest).
	Start *TransitionResult
	// Cancelled lists the tasks a policy cancelled (this one for
	// AdmitCancelledNewest, the oldest running for AdmitReplacedOldest)
	// with their steps cancelled; Reason says why.
	Cancelled []AdmitCancelled
	Reason    string
}

// AdmitCancelled is a task TaskAdmit cancelled, with the steps it
// cancelled with it.
type AdmitCancelled struct {
	TaskID int64
	Steps  []int64
}
