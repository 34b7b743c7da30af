package main

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/internal/cpustat"
)

// unitCost is what one unit of work (a River job, a tasker step, a pgbench
// transaction) cost in the timed phase: CPU microseconds in the client
// process and in the PostgreSQL server (0 when the server does not run on
// this machine), and bytes of write-ahead log.
type unitCost struct {
	ClientUS float64 `json:"client_us"`
	ServerUS float64 `json:"server_us"`
	WALBytes float64 `json:"wal_bytes"`
}

// meter reads this process's and the server's CPU time and the server's
// WAL position.
type meter struct {
	db     queryRower
	server *cpustat.Server
}

// queryRower is a connection or a pool.
type queryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// newMeter finds the server behind db; without it (a remote server) only
// the client's CPU and the WAL are measured.
func newMeter(ctx context.Context, db queryRower) *meter {
	m := &meter{db: db}
	var pid int
	if err := db.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err == nil {
		m.server, _ = cpustat.FindServer(pid)
	}
	return m
}

// mark is the CPU time used and the WAL written so far.
type mark struct {
	client, server time.Duration
	wal            int64
}

func (m *meter) mark(ctx context.Context) mark {
	var c mark
	c.client, _ = cpustat.Process()
	if m.server != nil {
		c.server, _ = m.server.CPU()
	}
	_ = m.db.QueryRow(ctx, "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint").Scan(&c.wal)
	return c
}

// per divides what was used between two marks by units.
func per(from, to mark, units int) unitCost {
	n := float64(max(units, 1))
	return unitCost{ClientUS: (to.client - from.client).Seconds() * 1e6 / n, ServerUS: (to.server - from.server).Seconds() * 1e6 / n,
		WALBytes: float64(to.wal-from.wal) / n}
}
