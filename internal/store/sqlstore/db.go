package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// querier is what both a connection pool and a transaction offer. It hides
// the difference between pgx (PostgreSQL) and database/sql (SQLite).
type querier interface {
	exec(ctx context.Context, q string, args ...any) (int64, error)
	query(ctx context.Context, q string, args ...any) (rows, error)
	queryRow(ctx context.Context, q string, args ...any) row
}

type rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

type row interface {
	Scan(dest ...any) error
}

type txer interface {
	querier
	commit(ctx context.Context) error
	rollback(ctx context.Context) error
}

type database interface {
	querier
	begin(ctx context.Context) (txer, error)
	close() error
	ping(ctx context.Context) error
}

func isNoRows(err error) bool {
	return errors.Is(err, pgx.ErrNoRows) || errors.Is(err, sql.ErrNoRows)
}

// isUniqueViolation reports a unique-constraint failure on either database.
func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23505"
	}
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// --- pgx ---

type pgxQuerier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// pgxQ counts one round trip per statement in rt (see Store.RoundTrips).
type pgxQ struct {
	q  pgxQuerier
	rt *atomic.Int64
}

func (p pgxQ) exec(ctx context.Context, q string, args ...any) (int64, error) {
	p.rt.Add(1)
	tag, err := p.q.Exec(ctx, q, args...)
	return tag.RowsAffected(), err
}

func (p pgxQ) query(ctx context.Context, q string, args ...any) (rows, error) {
	p.rt.Add(1)
	r, err := p.q.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return r, nil
}

func (p pgxQ) queryRow(ctx context.Context, q string, args ...any) row {
	p.rt.Add(1)
	return p.q.QueryRow(ctx, q, args...)
}

type pgxDB struct {
	pgxQ
	pool *pgxpool.Pool
}

func (p *pgxDB) begin(ctx context.Context) (txer, error) {
	p.rt.Add(1)
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &pgxTx{pgxQ: pgxQ{q: tx, rt: p.rt}, tx: tx}, nil
}

// beginBatch starts the transaction of a combined batch (see batch.go) on
// a connection of its own. BEGIN and the transaction's settings go out in
// one simple-protocol round trip. The batch statements read their input
// from one JSON parameter whose row count the planner cannot see, so a
// custom plan is never better than the generic one: planning them anew for
// every execution (PostgreSQL's default for their first uses and whenever
// the generic plan looks costlier) was a third of their cost.
func (p *pgxDB) beginBatch(ctx context.Context) (txer, error) {
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	p.rt.Add(1)
	if _, err := conn.Exec(ctx, "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan"); err != nil {
		conn.Release()
		return nil, err
	}
	return &pgxConnTx{pgxQ: pgxQ{q: conn, rt: p.rt}, conn: conn}, nil
}

// pgxConnTx is a transaction driven by plain statements on a pooled
// connection; commit and rollback release the connection.
type pgxConnTx struct {
	pgxQ
	conn *pgxpool.Conn
}

func (t *pgxConnTx) commit(ctx context.Context) error { return t.end(ctx, "COMMIT") }

func (t *pgxConnTx) rollback(ctx context.Context) error {
	if t.conn == nil {
		return nil
	}
	return t.end(ctx, "ROLLBACK")
}

func (t *pgxConnTx) end(ctx context.Context, stmt string) error {
	t.rt.Add(1)
	tag, err := t.conn.Exec(ctx, stmt)
	if err != nil {
		// The connection's state is unknown: close it rather than return
		// it to the pool mid-transaction.
		_ = t.conn.Conn().Close(context.WithoutCancel(ctx))
	}
	t.conn.Release()
	t.conn = nil
	if err == nil && stmt == "COMMIT" && tag.String() != "COMMIT" {
		// PostgreSQL answers ROLLBACK to the COMMIT of a failed transaction.
		return fmt.Errorf("transaction rolled back (%s)", tag.String())
	}
	return err
}

func (p *pgxDB) close() error                   { p.pool.Close(); return nil }
func (p *pgxDB) ping(ctx context.Context) error { return p.pool.Ping(ctx) }

type pgxTx struct {
	pgxQ
	tx pgx.Tx
}

// copier is an optional capability of a transaction: bulk-loading rows
// (PostgreSQL COPY). Callers fall back to multi-row INSERTs without it.
type copier interface {
	copyRows(ctx context.Context, table string, cols []string, rows [][]any) error
}

func (t *pgxTx) copyRows(ctx context.Context, table string, cols []string, rows [][]any) error {
	t.rt.Add(1)
	n, err := t.tx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(rows))
	if err != nil {
		return fmt.Errorf("copy into %s: %w", table, err)
	}
	if int(n) != len(rows) {
		return fmt.Errorf("copy into %s: wrote %d of %d rows", table, n, len(rows))
	}
	return nil
}

func (t *pgxTx) commit(ctx context.Context) error { t.rt.Add(1); return t.tx.Commit(ctx) }
func (t *pgxTx) rollback(ctx context.Context) error {
	t.rt.Add(1)
	err := t.tx.Rollback(ctx)
	if errors.Is(err, pgx.ErrTxClosed) {
		return nil
	}
	return err
}

// --- database/sql ---

type sqlQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// sqlQ counts one round trip per statement in rt (see Store.RoundTrips).
// It runs statements prepared once through stmts (nil: always afresh);
// tx is set when q is a transaction.
type sqlQ struct {
	q     sqlQuerier
	rt    *atomic.Int64
	stmts *stmtCache
	tx    *sql.Tx
}

// stmt returns q prepared, bound to the transaction when there is one, or
// nil to run q unprepared.
func (s sqlQ) stmt(ctx context.Context, q string) *sql.Stmt {
	st := s.stmts.get(ctx, q, s.tx != nil)
	if st != nil && s.tx != nil {
		return s.tx.StmtContext(ctx, st)
	}
	return st
}

func (s sqlQ) exec(ctx context.Context, q string, args ...any) (int64, error) {
	s.rt.Add(1)
	var res sql.Result
	var err error
	if st := s.stmt(ctx, q); st != nil {
		res, err = st.ExecContext(ctx, args...)
	} else {
		res, err = s.q.ExecContext(ctx, q, args...)
	}
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (s sqlQ) query(ctx context.Context, q string, args ...any) (rows, error) {
	s.rt.Add(1)
	var r *sql.Rows
	var err error
	if st := s.stmt(ctx, q); st != nil {
		r, err = st.QueryContext(ctx, args...)
	} else {
		r, err = s.q.QueryContext(ctx, q, args...)
	}
	if err != nil {
		return nil, err
	}
	return sqlRows{r}, nil
}

func (s sqlQ) queryRow(ctx context.Context, q string, args ...any) row {
	s.rt.Add(1)
	if st := s.stmt(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return s.q.QueryRowContext(ctx, q, args...)
}

type sqlRows struct{ *sql.Rows }

func (r sqlRows) Close() { _ = r.Rows.Close() }

type sqlDB struct {
	sqlQ
	db *sql.DB
}

func (s *sqlDB) begin(ctx context.Context) (txer, error) {
	s.rt.Add(1)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &sqlTx{sqlQ: sqlQ{q: tx, rt: s.rt, stmts: s.stmts, tx: tx}, tx: tx}, nil
}

func (s *sqlDB) close() error {
	s.stmts.close()
	return s.db.Close()
}
func (s *sqlDB) ping(ctx context.Context) error { return s.db.PingContext(ctx) }

type sqlTx struct {
	sqlQ
	tx *sql.Tx
}

// commit and rollback prepare the statements the transaction met for the
// first time, now that the connection is free.
func (t *sqlTx) commit(ctx context.Context) error {
	t.rt.Add(1)
	err := t.tx.Commit()
	t.stmts.preparePending(ctx)
	return err
}

func (t *sqlTx) rollback(ctx context.Context) error {
	t.rt.Add(1)
	err := t.tx.Rollback()
	t.stmts.preparePending(ctx)
	if errors.Is(err, sql.ErrTxDone) {
		return nil
	}
	return err
}
