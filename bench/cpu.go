package main

import (
	"context"
	"time"

	"github.com/tasker-systems/tasker/internal/cpustat"
	"github.com/tasker-systems/tasker/internal/pgprobe"
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

// meter reads this process's CPU time and the server's usage.
type meter struct{ server *pgprobe.Probe }

// newMeter finds the server behind db (a connection or a pool).
func newMeter(ctx context.Context, db pgprobe.Querier) *meter {
	return &meter{server: pgprobe.New(ctx, db)}
}

// mark is the client's CPU time and the server's usage so far.
type mark struct {
	client time.Duration
	server pgprobe.Mark
}

func (m *meter) mark(ctx context.Context) mark {
	c := mark{server: m.server.Mark(ctx)}
	c.client, _ = cpustat.Process()
	return c
}

// per divides what was used between two marks by units (a server figure
// that could not be read counts 0).
func per(from, to mark, units int) unitCost {
	n := float64(max(units, 1))
	u := unitCost{ClientUS: (to.client - from.client).Seconds() * 1e6 / n}
	if from.server.CPUOK && to.server.CPUOK {
		u.ServerUS = (to.server.CPU - from.server.CPU).Seconds() * 1e6 / n
	}
	if from.server.WALOK && to.server.WALOK {
		u.WALBytes = float64(to.server.WAL-from.server.WAL) / n
	}
	return u
}
