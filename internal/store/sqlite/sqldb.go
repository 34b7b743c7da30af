package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"sync/atomic"

	"github.com/tasker-systems/tasker/internal/store/sqlcore"
)

// The database/sql adapters of sqlcore's Querier, Tx and Database.

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

// Exec implements sqlcore.Querier.
func (s sqlQ) Exec(ctx context.Context, q string, args ...any) (int64, error) {
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

// Query implements sqlcore.Querier.
func (s sqlQ) Query(ctx context.Context, q string, args ...any) (sqlcore.Rows, error) {
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

// QueryRow implements sqlcore.Querier.
func (s sqlQ) QueryRow(ctx context.Context, q string, args ...any) sqlcore.Row {
	s.rt.Add(1)
	if st := s.stmt(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return s.q.QueryRowContext(ctx, q, args...)
}

type sqlRows struct{ *sql.Rows }

// Close implements sqlcore.Rows.
func (r sqlRows) Close() { _ = r.Rows.Close() }

type sqlDB struct {
	sqlQ
	db *sql.DB
}

// Begin implements sqlcore.Database.
func (s *sqlDB) Begin(ctx context.Context) (sqlcore.Tx, error) {
	s.rt.Add(1)
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &sqlTx{sqlQ: sqlQ{q: tx, rt: s.rt, stmts: s.stmts, tx: tx}, tx: tx}, nil
}

// Close implements sqlcore.Database.
func (s *sqlDB) Close() error {
	s.stmts.close()
	return s.db.Close()
}

// Ping implements sqlcore.Database.
func (s *sqlDB) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

type sqlTx struct {
	sqlQ
	tx *sql.Tx
}

// commit and rollback prepare the statements the transaction met for the
// first time, now that the connection is free.
func (t *sqlTx) Commit(ctx context.Context) error {
	t.rt.Add(1)
	err := t.tx.Commit()
	t.stmts.preparePending(ctx)
	return err
}

// Rollback implements sqlcore.Tx.
func (t *sqlTx) Rollback(ctx context.Context) error {
	t.rt.Add(1)
	err := t.tx.Rollback()
	t.stmts.preparePending(ctx)
	if errors.Is(err, sql.ErrTxDone) {
		return nil
	}
	return err
}
