package bench

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/internal/cpustat"
)

// probe reads a PostgreSQL server's usage on a connection of its own: its
// WAL position and, when it runs on this machine, its CPU time.
type probe struct {
	conn *pgx.Conn
	cpu  *cpustat.Server // nil: not on this machine
}

// newProbe connects to the server at url; nil when it cannot (the run
// goes on without the server's figures).
func newProbe(ctx context.Context, url string) *probe {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil
	}
	p := &probe{conn: conn}
	var pid int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err == nil {
		p.cpu, _ = cpustat.FindServer(pid)
	}
	return p
}

func (p *probe) close() {
	if p != nil {
		_ = p.conn.Close(context.Background())
	}
}

// usageMark is the resources used so far.
type usageMark struct {
	tasker, db time.Duration
	dbOK       bool
	wal        int64 // WAL insert position, bytes
	walOK      bool
}

func (r *runner) mark() usageMark {
	var m usageMark
	m.tasker, _ = cpustat.Process()
	if r.probe == nil {
		return m
	}
	if r.probe.cpu != nil {
		var err error
		m.db, err = r.probe.cpu.CPU()
		m.dbOK = err == nil
	}
	err := r.probe.conn.QueryRow(context.Background(), "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint").Scan(&m.wal)
	m.walOK = err == nil
	return m
}

// fillUsage records the resources used between two marks.
func (r *runner) fillUsage(from, to usageMark) {
	steps := float64(max(r.res.StepsCompleted, 1))
	c := &CPUStats{TaskerSeconds: (to.tasker - from.tasker).Seconds()}
	c.TaskerUSPerStep = c.TaskerSeconds * 1e6 / steps
	if from.dbOK && to.dbOK {
		db := (to.db - from.db).Seconds()
		per := db * 1e6 / steps
		c.DatabaseSeconds, c.DatabaseUSPerStep = &db, &per
	}
	r.res.CPU = c
	if from.walOK && to.walOK {
		r.res.WAL = &WALStats{Bytes: to.wal - from.wal, BytesPerStep: float64(to.wal-from.wal) / steps}
	}
}
