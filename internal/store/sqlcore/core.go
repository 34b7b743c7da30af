// Package sqlcore is the part of the SQL stores common to PostgreSQL
// (internal/store/postgres) and SQLite (internal/store/sqlite): the Go that
// orchestrates a store.Store call whose SQL differs between the databases
// only in its text. It holds no SQL of its own beyond the fragments of
// statements built per call (multi-row VALUES lists, task listing filters);
// every fixed statement is a named query of the database package, read
// from its queries/*.sql files (see Queries), and everything that differs
// in more than text is a method of the database package's Driver.
//
// Core implements the store.Store methods that are the same on both
// databases; each database package's Store embeds a *Core and adds the
// rest (claims, records, lease extension) and its optional capabilities.
package sqlcore

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tasker-systems/tasker/internal/store"
)

// ChunkRows bounds the rows of one multi-row statement (parameter limits).
const ChunkRows = 500

// CopyMinRows is the fewest rows a Copier gets by COPY; fewer go in one
// multi-row INSERT. A COPY costs a statement and a stream of its own: a
// single-step task's step and its transition by COPY took ~135 and ~95 µs
// of server time, and the step ids a sequence query first.
const CopyMinRows = 64

// Driver is what a database package tells the core: how its driver takes
// arguments and the few writes whose shape (not only text) is its own.
type Driver interface {
	// Name is "postgres" or "sqlite" (store.Store.Dialect, messages).
	Name() string
	// Time converts a time argument (already UTC, to the microsecond).
	Time(t time.Time) any
	// JSON converts a non-empty JSON argument.
	JSON(raw []byte) any
	// IDs converts an id list for the queries' id-list parameters.
	IDs(ids []int64) any
	// Strings converts a string list for the queries' list parameters.
	Strings(v []string) any
	// InStrings renders "column is in the string list in parameter n",
	// for statements built per call (task listing filters).
	InStrings(column string, n int) string
	// RowParams renders the parameters of one row of a multi-row VALUES
	// list: cols parameters numbered from start.
	RowParams(start, cols int) string
	// Clock converts the time a lease is compared with: the zero time
	// stands for the database's clock (the clock leases are granted and
	// extended by).
	Clock(t time.Time) any
	// MoveTask is the guarded task state change, its transition row and
	// its queue operation p.Queue (the one place a database writes a task
	// transition): it moves task p.TaskID from one of p.From to p.To at
	// now and returns the state it left and the task's new
	// transition_seq, or moved false when the task is in none of p.From
	// (or missing) and nothing was written.
	MoveTask(ctx context.Context, q Querier, p *store.TaskTransitionParams, now time.Time) (prev string, seq int, moved bool,
		err error)
	// AppendStepTransitions writes the transition rows of steps of task
	// taskID that moved at now (the one place a database writes step
	// transitions outside its combined statements).
	AppendStepTransitions(ctx context.Context, q Querier, taskID int64, trs []TransitionRow, now time.Time) error
	// RenewLeases restarts the leases of the steps ids (claimed by this
	// transaction) for lease from the database's clock and returns their
	// new end.
	RenewLeases(ctx context.Context, q Querier, ids []int64, lease time.Duration) (time.Time, error)
	// LockMigrations keeps concurrent migrators apart for the rest of
	// transaction q (a no-op where the transaction's write lock does).
	LockMigrations(ctx context.Context, q Querier) error
}

// Core is the common part of a SQL store (see the package comment).
type Core struct {
	db Database
	d  Driver
	q  Queries
	mq migrationSet
	// roundTrips counts statements sent to the database, including BEGIN,
	// COMMIT and ROLLBACK (LISTEN connections excluded).
	roundTrips atomic.Int64
	// named remembers the named tasks and steps of templates whose tasks
	// this store created (taskcreate.go).
	named namedCache
}

// New returns a core for driver d, with its named queries q (from
// LoadQueries) and its migrations.
func New(d Driver, q Queries, migrations Migrations) (*Core, error) {
	mq, err := loadMigrations(migrations)
	if err != nil {
		return nil, fmt.Errorf("%s store: %w", d.Name(), err)
	}
	return &Core{d: d, q: q, mq: mq}, nil
}

// SetDB sets the database connection (made after the core, because its
// adapters count round trips in RoundTripCounter).
func (s *Core) SetDB(db Database) { s.db = db }

// DB returns the database connection.
func (s *Core) DB() Database { return s.db }

// PerCall returns the database's PerCallPlanner querier, or the database
// itself when it has none.
func (s *Core) PerCall() Querier {
	if p, ok := s.db.(PerCallPlanner); ok {
		return p.PerCall()
	}
	return s.db
}

// Q returns the named query (validated to exist when the core was made).
func (s *Core) Q(name string) string { return s.q[name] }

// RoundTripCounter is the counter the database adapters add to, one per
// statement.
func (s *Core) RoundTripCounter() *atomic.Int64 { return &s.roundTrips }

// RoundTrips returns how many statements this store has sent to the
// database since it was opened, counting BEGIN, COMMIT and ROLLBACK. It is
// one atomic add per statement, cheap enough to leave on; benchmarks divide
// it by the steps run.
func (s *Core) RoundTrips() int64 { return s.roundTrips.Load() }

// Dialect implements store.Store.
func (s *Core) Dialect() string { return s.d.Name() }

// Ping implements store.Store.
func (s *Core) Ping(ctx context.Context) error { return s.db.Ping(ctx) }

// InTx runs fn in a transaction, committing when it returns nil.
func (s *Core) InTx(ctx context.Context, fn func(tx Tx) error) error {
	return s.InTxWith(ctx, s.db.Begin, fn)
}

// InTxWith is InTx with the transaction started by begin.
func (s *Core) InTxWith(ctx context.Context, begin func(context.Context) (Tx, error), fn func(tx Tx) error) error {
	tx, err := begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		if rbErr := tx.Rollback(context.WithoutCancel(ctx)); rbErr != nil {
			return fmt.Errorf("%w (rollback: %v)", err, rbErr)
		}
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// --- value conversions ---

// UTC is t in UTC to the microsecond (what both databases keep).
func UTC(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// T converts a time argument for the database.
func (s *Core) T(v time.Time) any { return s.d.Time(UTC(v)) }

// TP converts an optional time argument (nil: NULL).
func (s *Core) TP(v *time.Time) any {
	if v == nil {
		return nil
	}
	return s.T(*v)
}

// J converts a JSON argument for the database (nil for empty).
func (s *Core) J(raw []byte) any {
	if len(raw) == 0 {
		return nil
	}
	return s.d.JSON(raw)
}

// IDs converts an id list for the database.
func (s *Core) IDs(v []int64) any { return s.d.IDs(v) }

// Strs converts a string list for the database.
func (s *Core) Strs(v []string) any { return s.d.Strings(v) }

// ScanTime accepts what either driver returns for a time column or a time
// aggregate: time.Time, fixed-width text, or NULL.
type ScanTime struct {
	T     time.Time
	Valid bool
}

// SQLiteTimeFormat is how SQLite keeps times: fixed width, so that
// comparing the text compares the times.
const SQLiteTimeFormat = "2006-01-02T15:04:05.000000Z"

// Scan implements sql.Scanner.
func (st *ScanTime) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		st.Valid = false
		return nil
	case time.Time:
		st.T, st.Valid = x.UTC(), true
		return nil
	case string:
		return st.parse(x)
	case []byte:
		return st.parse(string(x))
	}
	return fmt.Errorf("scan time: unsupported type %T", v)
}

// ScanTimestamptz lets pgx hand over a timestamptz without boxing it for
// Scan (an allocation per column of every step read).
func (st *ScanTime) ScanTimestamptz(v pgtype.Timestamptz) error {
	if !v.Valid {
		st.Valid = false
		return nil
	}
	if v.InfinityModifier != pgtype.Finite {
		return fmt.Errorf("scan time: %s is not a point in time", v.InfinityModifier)
	}
	st.T, st.Valid = v.Time.UTC(), true
	return nil
}

func (st *ScanTime) parse(v string) error {
	for _, layout := range []string{SQLiteTimeFormat, time.RFC3339Nano, "2006-01-02 15:04:05.999999999-07:00", "2006-01-02 15:04:05"} {
		if t, err := time.Parse(layout, v); err == nil {
			st.T, st.Valid = t.UTC(), true
			return nil
		}
	}
	return fmt.Errorf("scan time: cannot parse %q", v)
}

// Ptr returns the time, or nil for NULL.
func (st *ScanTime) Ptr() *time.Time {
	if !st.Valid {
		return nil
	}
	t := st.T
	return &t
}
