// Package sqlite is the embedded SQLite store (modernc.org/sqlite, pure
// Go), tasker's default: store.Store without optional capabilities (no
// LISTEN: runners poll; no task creation in a caller's transaction).
//
// Its SQL is in queries/*.sql (named statements, loaded once at Open) and
// its schema in migrations/. What is common with PostgreSQL is in
// internal/store/sqlcore; what only SQLite does is here: opening the file
// (WAL, 0600, busy timeout: open.go), the statement cache (stmtcache.go),
// and claims and records in one transaction per call (claimrecord.go).
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/store/sqlcore"
)

//go:embed queries/*.sql
var queryFS embed.FS

//go:embed migrations/*.sql
var migrationFS embed.FS

// ownQueries are the statements this package runs itself (beyond
// sqlcore.CoreQueries).
var ownQueries = []string{"StepClaim", "RecordSteps", "TaskMove", "TaskMoveDequeue", "TaskTransitionInsert", "StepLeaseExtend",
	"RenewLeases"}

// Store is the SQLite implementation of store.Store.
type Store struct {
	*sqlcore.Core
	drv *driver
}

var _ store.Store = (*Store)(nil)

// loadQueries reads this package's named statements.
func loadQueries() (sqlcore.Queries, error) {
	return sqlcore.LoadQueries(queryFS, "queries", ownQueries...)
}

// Open opens (creating when missing) the SQLite database file at path, in
// WAL mode with foreign keys on. It does not migrate. A file it creates is
// readable and writable by its owner only (0600, whatever the umask), and
// so are the -wal and -shm files SQLite creates beside it; an existing file
// keeps its permissions. Any number of processes may open (and migrate)
// one fresh file at the same time.
func Open(ctx context.Context, path string) (*Store, error) {
	q, err := loadQueries()
	if err != nil {
		return nil, fmt.Errorf("sqlite store: %w", err)
	}
	drv := &driver{q: q}
	core, err := sqlcore.New(drv, q, sqlcore.Migrations{FS: migrationFS, Dir: "migrations"})
	if err != nil {
		return nil, err
	}
	drv.core = core
	if err := createPrivate(path); err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	// The busy timeout is the first pragma the driver runs; WAL mode is set
	// after the connection opened (setWAL), with retries.
	db, err := sql.Open("sqlite", sqliteDSN(path))
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	// One writer: a single connection serializes every statement of this
	// process, so no transaction ever waits on another of ours.
	db.SetMaxOpenConns(1)
	if err := setWAL(ctx, db); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	core.SetDB(&sqlDB{sqlQ: sqlQ{q: db, rt: core.RoundTripCounter(), stmts: newStmtCache(db)}, db: db})
	return &Store{Core: core, drv: drv}, nil
}

// Close implements store.Store.
func (s *Store) Close() error { return s.DB().Close() }

// driver is SQLite's sqlcore.Driver.
type driver struct {
	q    sqlcore.Queries
	core *sqlcore.Core // for the queue operation of MoveTask
}

// Name implements sqlcore.Driver.
func (*driver) Name() string { return "sqlite" }

// Time implements sqlcore.Driver: fixed-width UTC text, so that comparing
// the text compares the times.
func (*driver) Time(t time.Time) any { return t.Format(sqlcore.SQLiteTimeFormat) }

// JSON implements sqlcore.Driver: text.
func (*driver) JSON(raw []byte) any { return string(raw) }

// IDs implements sqlcore.Driver: a JSON array, read with json_each.
func (*driver) IDs(ids []int64) any { return jsonList(ids) }

// Strings implements sqlcore.Driver: a JSON array, read with json_each.
func (*driver) Strings(v []string) any { return jsonList(v) }

func jsonList[T any](v []T) string {
	b, err := json.Marshal(v)
	if err != nil { // numbers and strings always marshal
		panic(fmt.Sprintf("sqlite: list parameter: %v", err))
	}
	return string(b)
}

// InStrings implements sqlcore.Driver.
func (*driver) InStrings(column string, n int) string {
	return fmt.Sprintf("%s IN (SELECT value FROM json_each($%d))", column, n)
}

// RowParams implements sqlcore.Driver with anonymous parameters: SQLite
// looks named ones ($n) up in a list, which is quadratic in a statement of
// thousands.
func (*driver) RowParams(_, cols int) string { return strings.Repeat("?, ", cols-1) + "?" }

// Clock implements sqlcore.Driver: SQLite's clock is this machine's.
func (d *driver) Clock(t time.Time) any {
	if t.IsZero() {
		t = time.Now()
	}
	return d.Time(sqlcore.UTC(t))
}

// MoveTask implements sqlcore.Driver: the guarded UPDATE (which also
// removes the enqueue record for a QueueDelete: it is in the task's row),
// then the transition row and any other queue operation.
func (d *driver) MoveTask(ctx context.Context, q sqlcore.Querier, p *store.TaskTransitionParams, now time.Time) (string, int,
	bool, error) {
	from := make([]string, len(p.From))
	for i, st := range p.From {
		from[i] = string(st)
	}
	var prev sql.NullString
	var seq int
	dequeue := p.Queue.Kind == store.QueueDelete
	move := d.q["TaskMove"]
	if dequeue {
		move = d.q["TaskMoveDequeue"]
	}
	err := q.QueryRow(ctx, move, p.TaskID, string(p.To), jsonList(from), d.Time(now), p.To.Terminal()).Scan(&prev, &seq)
	if sqlcore.IsNoRows(err) {
		return "", 0, false, nil
	}
	if err != nil {
		return "", 0, false, err
	}
	if _, err := q.Exec(ctx, d.q["TaskTransitionInsert"], p.TaskID, prev.String, string(p.To), p.Event, p.Reason, p.Actor,
		d.core.J(p.Meta), seq, d.Time(now)); err != nil {
		return "", 0, false, fmt.Errorf("task %d transitions: %w", p.TaskID, err)
	}
	if !dequeue {
		if err := d.core.QueueApply(ctx, q, p.TaskID, p.Queue, now); err != nil {
			return "", 0, false, err
		}
	}
	return prev.String, seq, true, nil
}

// AppendStepTransitions implements sqlcore.Driver with multi-row INSERTs.
func (d *driver) AppendStepTransitions(ctx context.Context, q sqlcore.Querier, taskID int64, trs []sqlcore.TransitionRow,
	now time.Time) error {
	err := d.core.InsertRows(ctx, q, `INSERT INTO tasker_workflow_step_transitions (step_id, task_id, from_state, to_state,
	event, reason, actor, metadata, sort_key, created_at) VALUES`, 10, len(trs),
		func(i int) []any {
			tr := trs[i]
			return []any{tr.StepID, taskID, tr.From, tr.To, tr.Event, tr.Reason, tr.Actor, d.core.J(tr.Meta), tr.Seq, d.Time(now)}
		}, "", nil)
	if err != nil {
		return fmt.Errorf("step transitions: %w", err)
	}
	return nil
}

// RenewLeases implements sqlcore.Driver with this machine's clock.
func (d *driver) RenewLeases(ctx context.Context, q sqlcore.Querier, ids []int64, lease time.Duration) (time.Time, error) {
	until := sqlcore.UTC(time.Now().Add(lease))
	if _, err := q.Exec(ctx, d.q["RenewLeases"], d.Time(until), jsonList(ids)); err != nil {
		return time.Time{}, err
	}
	return until, nil
}

// LockMigrations implements sqlcore.Driver: a no-op, the transaction's
// write lock (BEGIN IMMEDIATE) keeps migrators apart.
func (*driver) LockMigrations(context.Context, sqlcore.Querier) error { return nil }
