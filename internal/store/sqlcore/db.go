package sqlcore

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Querier is what both a connection pool and a transaction offer. It hides
// the difference between pgx (PostgreSQL) and database/sql (SQLite); each
// database package adapts its driver to it.
type Querier interface {
	// Exec runs a statement and returns the rows it affected.
	Exec(ctx context.Context, q string, args ...any) (int64, error)
	// Query runs a statement and returns its rows.
	Query(ctx context.Context, q string, args ...any) (Rows, error)
	// QueryRow runs a statement for at most one row.
	QueryRow(ctx context.Context, q string, args ...any) Row
}

// Rows is a result set being read.
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Row is a single-row result.
type Row interface {
	Scan(dest ...any) error
}

// Tx is a transaction.
type Tx interface {
	Querier
	Commit(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// Database is a connection pool (or SQLite's one connection).
type Database interface {
	Querier
	Begin(ctx context.Context) (Tx, error)
	Close() error
	Ping(ctx context.Context) error
}

// PerCallPlanner is an optional capability of a Database: a Querier whose
// statements the database plans for their parameters on every call
// (PostgreSQL: sent unnamed) instead of reusing a cached plan. It is for
// the few statements whose best plan depends on the size of the tables and
// the values of their parameters (the queue claim, the next due time): a
// cached generic plan made while the tables were small keeps its
// sequential scan as they grow.
type PerCallPlanner interface {
	PerCall() Querier
}

// Copier is an optional capability of a transaction: bulk-loading rows
// (PostgreSQL COPY), with the ids of new tasks and steps taken
// beforehand. Without it rows go in as multi-row INSERTs.
type Copier interface {
	// CopyRows loads rows into table's columns cols.
	CopyRows(ctx context.Context, table string, cols []string, rows [][]any) error
	// NextIDs takes n ids, in ascending order, from the id sequence of
	// table (IDsOfTasks or IDsOfSteps).
	NextIDs(ctx context.Context, table IDSequence, n int) ([]int64, error)
}

// IDSequence names a table whose ids a Copier takes ahead (Copier.NextIDs).
type IDSequence int

const (
	// IDsOfTasks are tasker_tasks' task_id values.
	IDsOfTasks IDSequence = iota
	// IDsOfSteps are tasker_workflow_steps' step_id values.
	IDsOfSteps
)

// IsNoRows reports a query for one row that found none, on either driver.
func IsNoRows(err error) bool {
	return errors.Is(err, pgx.ErrNoRows) || errors.Is(err, sql.ErrNoRows)
}

// IsUniqueViolation reports a unique-constraint failure on either database.
func IsUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "23505"
	}
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}
