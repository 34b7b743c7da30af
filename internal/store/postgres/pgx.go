package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker/internal/store/sqlcore"
)

// The pgx adapters of sqlcore's Querier, Tx and Database.

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

// Exec implements sqlcore.Querier.
func (p pgxQ) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	p.rt.Add(1)
	tag, err := p.q.Exec(ctx, q, args...)
	return tag.RowsAffected(), err
}

// Query implements sqlcore.Querier.
func (p pgxQ) Query(ctx context.Context, q string, args ...any) (sqlcore.Rows, error) {
	p.rt.Add(1)
	r, err := p.q.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// QueryRow implements sqlcore.Querier.
func (p pgxQ) QueryRow(ctx context.Context, q string, args ...any) sqlcore.Row {
	p.rt.Add(1)
	return p.q.QueryRow(ctx, q, args...)
}

type pgxDB struct {
	pgxQ
	pool *pgxpool.Pool
	// nextIDs are the NextTaskIDs and NextStepIDs queries its
	// transactions run (by sqlcore.IDSequence).
	nextIDs [2]string
}

// Begin implements sqlcore.Database.
func (p *pgxDB) Begin(ctx context.Context) (sqlcore.Tx, error) {
	p.rt.Add(1)
	tx, err := p.pool.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &pgxTx{pgxQ: pgxQ{q: tx, rt: p.rt}, tx: tx, nextIDs: p.nextIDs}, nil
}

// batchSettings are the settings of a combined batch's transaction (see
// beginBatch).
const batchSettings = "SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off"

// beginBatch starts the transaction of a combined batch (see batch.go) on
// a connection of its own. BEGIN and the transaction's settings go out in
// one simple-protocol round trip. The batch statements read their input
// from one JSON parameter whose row count the planner cannot see, so a
// custom plan is never better than the generic one: planning them anew for
// every execution (PostgreSQL's default for their first uses and whenever
// the generic plan looks costlier) was a third of their cost.
//
// A generic plan is made once per connection and kept, and it was made for
// the tables as they were then. On a new database (or a new bench schema)
// the first plans saw tables of a few pages and chose sequential scans
// with the id lists as filters; as the tables grew, the kept plans went on
// scanning every task and step for each batch (continuous creation at 1,400
// tasks/s: 5,500 rows read per record batch, 8.8 ms a batch, until an ANALYZE
// invalidated them). Every batch statement finds its rows by index from id
// lists, so sequential scans are disabled for the transaction: its plans
// are index plans whatever the tables' size when they were made.
func (p *pgxDB) beginBatch(ctx context.Context) (sqlcore.Tx, error) {
	conn, err := p.pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	p.rt.Add(1)
	if _, err := conn.Exec(ctx, "BEGIN; "+batchSettings); err != nil {
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

// Commit implements sqlcore.Tx.
func (t *pgxConnTx) Commit(ctx context.Context) error { return t.end(ctx, "COMMIT") }

// Rollback implements sqlcore.Tx.
func (t *pgxConnTx) Rollback(ctx context.Context) error {
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

// PerCall implements sqlcore.PerCallPlanner: statements go unnamed (pgx's
// QueryExecModeExec: parsed, bound and run in one round trip), so that
// PostgreSQL plans them for their parameters every time. A pool
// connection's cached generic plan of the queue claim, made while the
// tables were a few pages, kept a sequential scan of every task (creating
// while working: 29 ms a claim after 15 s, until an ANALYZE).
func (p *pgxDB) PerCall() sqlcore.Querier { return perCallQ{p.pgxQ} }

// perCallQ sends its statements unnamed (see pgxDB.PerCall).
type perCallQ struct{ q pgxQ }

// Exec implements sqlcore.Querier.
func (p perCallQ) Exec(ctx context.Context, q string, args ...any) (int64, error) {
	return p.q.Exec(ctx, q, append([]any{pgx.QueryExecModeExec}, args...)...)
}

// Query implements sqlcore.Querier.
func (p perCallQ) Query(ctx context.Context, q string, args ...any) (sqlcore.Rows, error) {
	return p.q.Query(ctx, q, append([]any{pgx.QueryExecModeExec}, args...)...)
}

// QueryRow implements sqlcore.Querier.
func (p perCallQ) QueryRow(ctx context.Context, q string, args ...any) sqlcore.Row {
	return p.q.QueryRow(ctx, q, append([]any{pgx.QueryExecModeExec}, args...)...)
}

// Close implements sqlcore.Database.
func (p *pgxDB) Close() error { p.pool.Close(); return nil }

// Ping implements sqlcore.Database.
func (p *pgxDB) Ping(ctx context.Context) error { return p.pool.Ping(ctx) }

type pgxTx struct {
	pgxQ
	tx      pgx.Tx
	nextIDs [2]string
}

var _ sqlcore.Copier = (*pgxTx)(nil)

// CopyRows implements sqlcore.Copier.
func (t *pgxTx) CopyRows(ctx context.Context, table string, cols []string, rows [][]any) error {
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

// Commit implements sqlcore.Tx.
func (t *pgxTx) Commit(ctx context.Context) error { t.rt.Add(1); return t.tx.Commit(ctx) }

// Rollback implements sqlcore.Tx.
func (t *pgxTx) Rollback(ctx context.Context) error {
	t.rt.Add(1)
	err := t.tx.Rollback(ctx)
	if errors.Is(err, pgx.ErrTxClosed) {
		return nil
	}
	return err
}

// NextIDs implements sqlcore.Copier: n ids from the table's sequence in
// one round trip.
func (t *pgxTx) NextIDs(ctx context.Context, table sqlcore.IDSequence, n int) ([]int64, error) {
	rs, err := t.Query(ctx, t.nextIDs[table], n)
	if err != nil {
		return nil, fmt.Errorf("allocate ids: %w", err)
	}
	defer rs.Close()
	ids := make([]int64, 0, n)
	for rs.Next() {
		var id int64
		if err := rs.Scan(&id); err != nil {
			return nil, fmt.Errorf("allocate ids: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("allocate ids: %w", err)
	}
	slices.Sort(ids)
	if len(ids) != n {
		return nil, fmt.Errorf("allocate ids: got %d of %d", len(ids), n)
	}
	return ids, nil
}
