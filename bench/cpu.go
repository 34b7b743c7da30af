package main

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/internal/cpustat"
)

// cpuUse is the CPU time one unit of work (a River job, a tasker step, a
// pgbench transaction) cost in the timed phase, in microseconds: in the
// client process and in the PostgreSQL server (0 when the server does not
// run on this machine).
type cpuUse struct {
	ClientUS float64 `json:"client_us"`
	ServerUS float64 `json:"server_us"`
}

// cpuMeter reads this process's and the server's CPU time.
type cpuMeter struct {
	server *cpustat.Server
}

// queryRower is a connection or a pool.
type queryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// newCPUMeter finds the server behind db; without it (a remote server)
// only the client is measured.
func newCPUMeter(ctx context.Context, db queryRower) *cpuMeter {
	m := &cpuMeter{}
	var pid int
	if err := db.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err == nil {
		m.server, _ = cpustat.FindServer(pid)
	}
	return m
}

// cpuMark is the CPU time used so far.
type cpuMark struct{ client, server time.Duration }

func (m *cpuMeter) mark() cpuMark {
	var c cpuMark
	c.client, _ = cpustat.Process()
	if m.server != nil {
		c.server, _ = m.server.CPU()
	}
	return c
}

// per divides the CPU time between two marks by units.
func per(from, to cpuMark, units int) cpuUse {
	n := float64(max(units, 1))
	return cpuUse{ClientUS: (to.client - from.client).Seconds() * 1e6 / n, ServerUS: (to.server - from.server).Seconds() * 1e6 / n}
}
