package pgprobe

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/internal/testdb"
)

// Writes move the WAL position, and the test server (on this machine) has
// its CPU time read.
func TestMarkSeesWritesAndServerCPU(t *testing.T) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testdb.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	p := New(ctx, conn)
	before := p.Mark(ctx)
	if !before.WALOK || !before.CPUOK {
		t.Fatalf("mark %+v: the WAL position and the local server's CPU must be readable", before)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE w AS SELECT i, repeat('x', 100) AS s FROM generate_series(1, 5000) i"); err != nil {
		t.Fatal(err)
	}
	after := p.Mark(ctx)
	if d := after.WAL - before.WAL; d < 5000*100 {
		t.Fatalf("writing ~600 KB moved the WAL by %d bytes", d)
	}
	if after.CPU < before.CPU {
		t.Fatalf("server CPU went backwards: %s -> %s", before.CPU, after.CPU)
	}
}
