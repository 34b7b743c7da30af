// Package pgprobe reads what a PostgreSQL server has used so far: its CPU
// time, when it runs on this machine (internal/cpustat), and its WAL
// position. Benchmarks take a Mark before and after the work they time.
package pgprobe

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/internal/cpustat"
)

// Querier is a pgx connection or pool.
type Querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Probe reads a server's usage through db.
type Probe struct {
	db  Querier
	cpu *cpustat.Server // nil: the server does not run on this machine
}

// New finds the server behind db. Without it on this machine only the WAL
// is measured.
func New(ctx context.Context, db Querier) *Probe {
	p := &Probe{db: db}
	var pid int
	if err := db.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err == nil {
		p.cpu, _ = cpustat.FindServer(pid)
	}
	return p
}

// Mark is the server's usage at one moment; the OK fields say whether each
// figure could be read.
type Mark struct {
	CPU   time.Duration // the whole cluster's user plus system time
	CPUOK bool
	WAL   int64 // the WAL insert position, in bytes
	WALOK bool
}

// Mark reads the server's usage now.
func (p *Probe) Mark(ctx context.Context) Mark {
	var m Mark
	if p.cpu != nil {
		var err error
		m.CPU, err = p.cpu.CPU()
		m.CPUOK = err == nil
	}
	m.WALOK = p.db.QueryRow(ctx, "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint").Scan(&m.WAL) == nil
	return m
}
