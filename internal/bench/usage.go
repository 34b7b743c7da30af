package bench

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/internal/cpustat"
	"github.com/tasker-systems/tasker/internal/pgprobe"
)

// probe reads a PostgreSQL server's usage on a connection of its own.
type probe struct {
	conn *pgx.Conn
	pg   *pgprobe.Probe
}

// newProbe connects to the server at url; nil when it cannot (the run
// goes on without the server's figures).
func newProbe(ctx context.Context, url string) *probe {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil
	}
	return &probe{conn: conn, pg: pgprobe.New(ctx, conn)}
}

func (p *probe) close() {
	if p != nil {
		_ = p.conn.Close(context.Background())
	}
}

// usageMark is the resources used so far: this process's CPU time and the
// server's usage.
type usageMark struct {
	tasker time.Duration
	server pgprobe.Mark
}

func (r *runner) mark() usageMark {
	var m usageMark
	m.tasker, _ = cpustat.Process()
	if r.probe != nil {
		m.server = r.probe.pg.Mark(context.Background())
	}
	return m
}

// fillUsage records the resources used between two marks.
func (r *runner) fillUsage(from, to usageMark) {
	steps := float64(max(r.res.StepsCompleted, 1))
	c := &CPUStats{TaskerSeconds: (to.tasker - from.tasker).Seconds()}
	c.TaskerUSPerStep = c.TaskerSeconds * 1e6 / steps
	if from.server.CPUOK && to.server.CPUOK {
		db := (to.server.CPU - from.server.CPU).Seconds()
		per := db * 1e6 / steps
		c.DatabaseSeconds, c.DatabaseUSPerStep = &db, &per
	}
	r.res.CPU = c
	if from.server.WALOK && to.server.WALOK {
		wal := to.server.WAL - from.server.WAL
		r.res.WAL = &WALStats{Bytes: wal, BytesPerStep: float64(wal) / steps}
	}
}

// costs records what one created task cost between two marks.
func (s *InitStats) costs(from, to usageMark) {
	n := float64(max(s.Tasks, 1))
	s.TaskerUSPerTask = (to.tasker - from.tasker).Seconds() * 1e6 / n
	if from.server.CPUOK && to.server.CPUOK {
		per := (to.server.CPU - from.server.CPU).Seconds() * 1e6 / n
		s.DatabaseUSPerTask = &per
	}
	if from.server.WALOK && to.server.WALOK {
		per := float64(to.server.WAL-from.server.WAL) / n
		s.WALBytesPerTask = &per
	}
}
