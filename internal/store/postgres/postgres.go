// Package postgres is the PostgreSQL store (pgx v5): store.Store, plus the
// optional capabilities store.Notifier (LISTEN/NOTIFY) and
// store.TxTaskCreator (a task created in the caller's transaction).
//
// Its SQL is in queries/*.sql (named statements, loaded once at Open) and
// its schema in migrations/. What is common with SQLite is in
// internal/store/sqlcore; what only PostgreSQL does is here: COPY of many
// rows, the transaction executor's bulk operations, one statement for the
// claims or records of many tasks (batch.go; the engine does the
// batching), the server's clock for leases, PgBouncer handling
// (pgbouncer.go) and the jit setting.
package postgres

import (
	"context"
	"embed"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker/internal/redact"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/store/sqlcore"
	"github.com/tasker-systems/tasker/taskertype"
)

//go:embed queries/*.sql
var queryFS embed.FS

//go:embed migrations/*.sql
var migrationFS embed.FS

// ownQueries are the statements this package runs itself (beyond
// sqlcore.CoreQueries).
var ownQueries = []string{"RecordBatch", "Summaries", "TaskMoves", "ClaimBatch", "LockTasks", "TaskStates",
	"StartedTasks", "TaskCreateRound", "StepTransitionsInsert", "StepLeaseExtend", "RenewLeases", "NextStepIDs", "NextTaskIDs", "MigrationLock", "ReadyStepIDs",
	"ConcurrencyRunningMany", "QueueClaimStart", "ConcurrencyStart"}

// Store is the PostgreSQL implementation of store.Store.
type Store struct {
	*sqlcore.Core
	drv *driver
	pg  *pgxDB
	// listen is the pool LISTEN connects through (the main pool, or the
	// direct one of listen_host/listen_port); listenErr is why Listen is
	// refused (PgBouncer without a direct address).
	listen    *pgxpool.Pool
	listenErr error
	// listenPool is the direct LISTEN pool, closed with the store (nil:
	// LISTEN uses the main pool).
	listenPool *pgxpool.Pool
	// announce notifies runners of committed enqueues (announce.go).
	announce *announcer
}

var (
	_ store.Store          = (*Store)(nil)
	_ store.Notifier       = (*Store)(nil)
	_ store.TxTaskCreator  = (*Store)(nil)
	_ store.QueueAnnouncer = (*Store)(nil)
)

// loadQueries reads this package's named statements.
func loadQueries() (sqlcore.Queries, error) {
	return sqlcore.LoadQueries(queryFS, "queries", ownQueries...)
}

// Open connects to PostgreSQL. It does not migrate.
func Open(ctx context.Context, databaseURL string) (*Store, error) {
	q, err := loadQueries()
	if err != nil {
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	cfg, bouncer, listenCfg, err := parsePostgresConfig(databaseURL) // pgbouncer.go
	if err != nil {
		return nil, fmt.Errorf("parse database URL %s: %w", RedactURL(databaseURL), redact.Error(err, databaseURL))
	}
	if cfg.MaxConns < 8 {
		cfg.MaxConns = 8
	}
	// The engine's statements touch tens to thousands of rows by index; the
	// JIT compiler's estimate that some of them are expensive (a claim of
	// 2,000 steps of a 100,000-step task) made it spend ~30 ms compiling a
	// 30 ms statement. A jit setting in the URL wins.
	if _, ok := cfg.ConnConfig.RuntimeParams["jit"]; !ok && !bouncer {
		cfg.ConnConfig.RuntimeParams["jit"] = "off"
	}
	drv := &driver{q: q}
	core, err := sqlcore.New(drv, q, sqlcore.Migrations{FS: migrationFS, Dir: "migrations"})
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", RedactURL(databaseURL), redact.Error(err, databaseURL))
	}
	s := &Store{Core: core, drv: drv, listen: pool}
	if bouncer {
		s.listen, s.listenErr = nil, errListenPgBouncer
	}
	if listenCfg != nil { // a direct connection for LISTEN (pgbouncer.go)
		if s.listen, err = pgxpool.NewWithConfig(ctx, listenCfg); err != nil {
			pool.Close()
			return nil, fmt.Errorf("listen connection to %s: %w", RedactURL(databaseURL), redact.Error(err, databaseURL))
		}
		s.listenPool, s.listenErr = s.listen, nil
	}
	s.pg = &pgxDB{pgxQ: pgxQ{q: pool, rt: core.RoundTripCounter()}, pool: pool, nextIDs: [2]string{q["NextTaskIDs"], q["NextStepIDs"]}}
	s.announce = &announcer{pool: pool}
	core.SetDB(s.pg)
	return s, nil
}

// RedactURL masks every password of a database URL or keyword/value
// connection string for messages and logs (see internal/redact).
func RedactURL(raw string) string { return redact.DSN(raw) }

// Close implements store.Store.
func (s *Store) Close() error {
	s.announce.close()
	if s.listenPool != nil {
		defer s.listenPool.Close()
	}
	return s.pg.Close()
}

// StepClaim implements store.Store: a transaction of one claim (the
// engine batches claims of many tasks through Transact).
func (s *Store) StepClaim(ctx context.Context, p *store.StepClaimParams) ([]*store.ClaimedStep, error) {
	_, _, claimed, err := s.startAndClaim(ctx, nil, p)
	return claimed, err
}

// TaskStartAndClaim implements store.Store: the start transition and the
// claim share one transaction.
func (s *Store) TaskStartAndClaim(ctx context.Context, start *store.TaskTransitionParams, p *store.StepClaimParams) (*store.TransitionResult,
	*taskertype.Task, []*store.ClaimedStep, error) {
	return s.startAndClaim(ctx, start, p)
}

func (s *Store) startAndClaim(ctx context.Context, start *store.TaskTransitionParams, p *store.StepClaimParams) (*store.TransitionResult,
	*taskertype.Task, []*store.ClaimedStep, error) {
	var r *store.StartAndClaimResult
	err := s.Transact(ctx, func(tx store.Tx) error {
		rs, err := tx.TaskStartAndClaimMany(ctx, []*store.StartAndClaimParams{{Start: start, Claim: p}})
		if err != nil {
			return err
		}
		r = rs[0]
		return nil
	})
	if err != nil {
		return nil, nil, nil, err
	}
	if r.Err != nil {
		return nil, nil, nil, r.Err
	}
	return r.Transition, r.Task, r.Claimed, nil
}

// StepRecord implements store.Store: a transaction of one record (the
// engine batches records of many tasks through Transact).
func (s *Store) StepRecord(ctx context.Context, p *store.StepRecordParams) ([]bool, error) {
	if len(p.Outcomes) == 0 {
		return make([]bool, 0), nil
	}
	if err := sqlcore.CheckOutcomes(p); err != nil {
		return nil, err
	}
	var applied [][]bool
	err := s.Transact(ctx, func(tx store.Tx) error {
		var err error
		applied, err = tx.StepRecordMany(ctx, &store.StepRecordManyParams{Records: []*store.StepRecordParams{p}})
		return err
	})
	if err != nil {
		return nil, err
	}
	return applied[0], nil
}

// StepLeaseExtend implements store.Store: the new end is the server's
// clock at the statement plus lease.
func (s *Store) StepLeaseExtend(ctx context.Context, owner string, stepIDs []int64, lease time.Duration) (int, time.Time, error) {
	var n int
	var until time.Time
	if err := s.DB().QueryRow(ctx, s.Q("StepLeaseExtend"), owner, max(lease.Microseconds(), 1), stepIDs).Scan(&n, &until); err != nil {
		return 0, time.Time{}, fmt.Errorf("extend step leases: %w", err)
	}
	return n, until.UTC(), nil
}

// TaskCreateTx implements store.TxTaskCreator: the task is written with
// tx's connection and becomes visible when the caller commits tx. tx must
// be on this store's database, with the same search_path. The result has
// no steps.
func (s *Store) TaskCreateTx(ctx context.Context, tx pgx.Tx, p *store.TaskCreateParams) (*store.TaskCreateResult, error) {
	res, err := s.TaskCreateIn(ctx, &pgxTx{pgxQ: pgxQ{q: tx, rt: s.RoundTripCounter()}, tx: tx, nextIDs: s.pg.nextIDs}, p)
	if err == nil && res.Created && p.Queue.Kind == store.QueueUpsert {
		// Runners learn of it when the caller commits (a NOTIFY is
		// delivered at commit, and not at all on rollback); the store
		// cannot announce a commit it does not make.
		if _, err := tx.Exec(ctx, `SELECT pg_notify('tasker_queue', current_schema())`); err != nil {
			return nil, fmt.Errorf("notify runners of task in caller's transaction: %w", err)
		}
	}
	return res, err
}

// driver is PostgreSQL's sqlcore.Driver.
type driver struct{ q sqlcore.Queries }

// Name implements sqlcore.Driver.
func (*driver) Name() string { return "postgres" }

// Time implements sqlcore.Driver: timestamptz.
func (*driver) Time(t time.Time) any { return t }

// JSON implements sqlcore.Driver: jsonb from bytes.
func (*driver) JSON(raw []byte) any { return raw }

// IDs implements sqlcore.Driver: a bigint[].
func (*driver) IDs(ids []int64) any { return ids }

// Strings implements sqlcore.Driver: a text[].
func (*driver) Strings(v []string) any { return v }

// InStrings implements sqlcore.Driver.
func (*driver) InStrings(column string, n int) string {
	return fmt.Sprintf("%s = ANY($%d::text[])", column, n)
}

// RowParams implements sqlcore.Driver: $start, ..., $(start+cols-1).
func (*driver) RowParams(start, cols int) string {
	b := make([]byte, 0, cols*5)
	for i := range cols {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = fmt.Appendf(b, "$%d", start+i)
	}
	return string(b)
}

// Clock implements sqlcore.Driver: the statements read the zero time as
// the server's clock (statement_timestamp()).
func (*driver) Clock(t time.Time) any {
	if t.IsZero() {
		return t
	}
	return sqlcore.UTC(t)
}

// MoveTask implements sqlcore.Driver: a batch of one for applyTaskMoves,
// which also applies p.Queue.
func (d *driver) MoveTask(ctx context.Context, q sqlcore.Querier, p *store.TaskTransitionParams, now time.Time) (string, int,
	bool, error) {
	cp := *p
	cp.Now = now
	moved, err := d.applyTaskMoves(ctx, q, []*store.TaskTransitionParams{&cp})
	if err != nil {
		return "", 0, false, err
	}
	return moved[0].prev, moved[0].seq, moved[0].ok, nil
}

// AppendStepTransitions implements sqlcore.Driver: one statement of
// arrays, one per column.
func (d *driver) AppendStepTransitions(ctx context.Context, q sqlcore.Querier, taskID int64, trs []sqlcore.TransitionRow,
	now time.Time) error {
	n := len(trs)
	ids := make([]int64, n)
	from, to, event, reason, actor := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	meta, seq := make([]*string, n), make([]int32, n)
	for i, tr := range trs {
		ids[i], from[i], to[i], event[i], reason[i], actor[i], seq[i] = tr.StepID, tr.From, tr.To, tr.Event, tr.Reason, tr.Actor,
			int32(tr.Seq)
		if len(tr.Meta) > 0 {
			m := string(tr.Meta)
			meta[i] = &m
		}
	}
	if _, err := q.Exec(ctx, d.q["StepTransitionsInsert"], taskID, ids, from, to, event, reason, actor, meta, seq,
		sqlcore.UTC(now)); err != nil {
		return fmt.Errorf("step transitions: %w", err)
	}
	return nil
}

// RenewLeases implements sqlcore.Driver with the server's clock.
func (d *driver) RenewLeases(ctx context.Context, q sqlcore.Querier, ids []int64, lease time.Duration) (time.Time, error) {
	var until time.Time
	if err := q.QueryRow(ctx, d.q["RenewLeases"], max(lease.Microseconds(), 1), ids).Scan(&until); err != nil {
		return time.Time{}, err
	}
	return until.UTC(), nil
}

// LockMigrations implements sqlcore.Driver with an advisory lock.
func (d *driver) LockMigrations(ctx context.Context, q sqlcore.Querier) error {
	_, err := q.Exec(ctx, d.q["MigrationLock"])
	return err
}
