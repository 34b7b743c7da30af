// Package sqlstore implements store.Store for PostgreSQL (through pgx v5) and
// for the embedded SQLite default (through modernc.org/sqlite, pure Go).
//
// One Go implementation serves both dialects; the SQL differs only where the
// databases do: row locking (FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite has
// one writer and takes its write lock at BEGIN IMMEDIATE), id lists (= ANY of
// an array on PostgreSQL, json_each on SQLite), time values (timestamptz on
// PostgreSQL; fixed-width UTC text on SQLite, so that text order is time
// order) and JSON (jsonb vs text). Each dialect owns its migrations under
// migrations/<dialect>.
package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/tasker-systems/tasker/internal/redact"
	"github.com/tasker-systems/tasker/internal/store"
)

const (
	dialectPostgres = "postgres"
	dialectSQLite   = "sqlite"
	// sqliteTimeFormat is fixed width so that comparing the text compares the times.
	sqliteTimeFormat = "2006-01-02T15:04:05.000000Z"
	// chunkRows bounds the rows of one multi-row statement (parameter limits).
	chunkRows = 500
	// copyMinRows is the fewest rows PostgreSQL gets by COPY; fewer go in
	// one multi-row INSERT. A COPY costs a statement and a stream of its
	// own: a single-step task's step and its transition by COPY took ~135
	// and ~95 µs of server time, and the step ids a sequence query first.
	copyMinRows = 64
)

// Store is the SQL implementation of store.Store.
type Store struct {
	db      database
	dialect string
	pool    *pgxpool.Pool // PostgreSQL only, for LISTEN
	// listenErr is why Listen is refused (nil: the dialect's reason).
	listenErr error
	// listenPool is the direct LISTEN pool of listen_host/listen_port,
	// closed with the store (nil: LISTEN uses pool).
	listenPool *pgxpool.Pool
	q          queries
	// roundTrips counts statements sent to the database, including BEGIN,
	// COMMIT and ROLLBACK (LISTEN connections excluded).
	roundTrips atomic.Int64
	// records batches StepRecord/StepRecordFinalize calls across tasks
	// (PostgreSQL only; nil on SQLite, whose single writer gains nothing).
	records *combiner[*recordReq]
	// claims batches StepClaim/TaskStartAndClaim calls the same way.
	claims *combiner[*claimReq]
}

var _ store.Store = (*Store)(nil)

// OpenPostgres connects to PostgreSQL. It does not migrate.
func OpenPostgres(ctx context.Context, databaseURL string) (*Store, error) {
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
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", RedactURL(databaseURL), redact.Error(err, databaseURL))
	}
	s := &Store{dialect: dialectPostgres, pool: pool}
	if bouncer {
		s.pool, s.listenErr = nil, errListenPgBouncer
	}
	if listenCfg != nil { // a direct connection for LISTEN (pgbouncer.go)
		if s.pool, err = pgxpool.NewWithConfig(ctx, listenCfg); err != nil {
			pool.Close()
			return nil, fmt.Errorf("listen connection to %s: %w", RedactURL(databaseURL), redact.Error(err, databaseURL))
		}
		s.listenPool, s.listenErr = s.pool, nil
	}
	s.db = &pgxDB{pgxQ: pgxQ{q: pool, rt: &s.roundTrips}, pool: pool}
	s.q = buildQueries(s.dialect)
	s.records = newCombiner(s, s.recordBatchTx)
	s.claims = newCombiner(s, s.claimBatchTx)
	return s, nil
}

// OpenSQLite opens (creating when missing) the SQLite database file at path,
// in WAL mode with foreign keys on. It does not migrate. A file it creates
// is readable and writable by its owner only (0600, whatever the umask),
// and so are the -wal and -shm files SQLite creates beside it; an existing
// file keeps its permissions. Any number of processes may open (and
// migrate) one fresh file at the same time.
func OpenSQLite(ctx context.Context, path string) (*Store, error) {
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
	s := &Store{dialect: dialectSQLite}
	s.db = &sqlDB{sqlQ: sqlQ{q: db, rt: &s.roundTrips, stmts: newStmtCache(db)}, db: db}
	s.q = buildQueries(s.dialect)
	return s, nil
}

// RedactURL masks every password of a database URL or keyword/value
// connection string for messages and logs (see internal/redact).
func RedactURL(raw string) string { return redact.DSN(raw) }

// RoundTrips returns how many statements this store has sent to the
// database since it was opened, counting BEGIN, COMMIT and ROLLBACK. It is
// one atomic add per statement, cheap enough to leave on; benchmarks divide
// it by the steps run.
func (s *Store) RoundTrips() int64 { return s.roundTrips.Load() }

// Dialect implements store.Store.
func (s *Store) Dialect() string { return s.dialect }

// Close implements store.Store.
func (s *Store) Close() error {
	if s.records != nil {
		s.records.close()
		s.claims.close()
	}
	if s.listenPool != nil {
		defer s.listenPool.Close()
	}
	return s.db.close()
}

// Ping implements store.Store.
func (s *Store) Ping(ctx context.Context) error { return s.db.ping(ctx) }

// inTx runs fn in a transaction, committing when it returns nil.
func (s *Store) inTx(ctx context.Context, fn func(tx txer) error) error {
	return s.inTxWith(ctx, s.db.begin, fn)
}

// inTxWith is inTx with the transaction started by begin.
func (s *Store) inTxWith(ctx context.Context, begin func(context.Context) (txer, error), fn func(tx txer) error) error {
	tx, err := begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		if rbErr := tx.rollback(context.WithoutCancel(ctx)); rbErr != nil {
			return fmt.Errorf("%w (rollback: %v)", err, rbErr)
		}
		return err
	}
	if err := tx.commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// --- value conversions ---

func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Microsecond) }

// t converts a time argument for the dialect.
func (s *Store) t(v time.Time) any {
	if s.dialect == dialectSQLite {
		return utc(v).Format(sqliteTimeFormat)
	}
	return utc(v)
}

func (s *Store) tp(v *time.Time) any {
	if v == nil {
		return nil
	}
	return s.t(*v)
}

// j converts a JSON argument for the dialect (nil for empty).
func (s *Store) j(raw []byte) any {
	if len(raw) == 0 {
		return nil
	}
	if s.dialect == dialectSQLite {
		return string(raw)
	}
	return []byte(raw)
}

// ids converts an id list for use with the dialect's inList fragment.
func (s *Store) ids(v []int64) any {
	if s.dialect == dialectSQLite {
		b, _ := json.Marshal(v)
		return string(b)
	}
	return v
}

func (s *Store) strs(v []string) any {
	if s.dialect == dialectSQLite {
		b, _ := json.Marshal(v)
		return string(b)
	}
	return v
}

// scanTime accepts what either driver returns for a time column or a time
// aggregate: time.Time, fixed-width text, or NULL.
type scanTime struct {
	T     time.Time
	Valid bool
}

func (st *scanTime) Scan(v any) error {
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
func (st *scanTime) ScanTimestamptz(v pgtype.Timestamptz) error {
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

func (st *scanTime) parse(v string) error {
	for _, layout := range []string{sqliteTimeFormat, time.RFC3339Nano, "2006-01-02 15:04:05.999999999-07:00", "2006-01-02 15:04:05"} {
		if t, err := time.Parse(layout, v); err == nil {
			st.T, st.Valid = t.UTC(), true
			return nil
		}
	}
	return fmt.Errorf("scan time: cannot parse %q", v)
}

func (st *scanTime) ptr() *time.Time {
	if !st.Valid {
		return nil
	}
	t := st.T
	return &t
}

// nullString scans text that may be NULL.
type nullString struct{ sql.NullString }

func placeholders(start, n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d", start+i)
	}
	return b.String()
}
