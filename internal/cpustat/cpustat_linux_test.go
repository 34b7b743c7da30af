//go:build linux

package cpustat

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/internal/testdb"
)

func TestParseStatCommandWithSpacesAndParens(t *testing.T) {
	line := []byte("4242 (post gres) (x)) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 31 7 9 20 0 1 0 123 456 789\n")
	st, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if st.comm != "post gres) (x)" || st.ppid != 17 || st.utime != 250 || st.stime != 31 || st.cutime != 7 || st.cstime != 9 {
		t.Fatalf("parsed %+v", st)
	}
	if _, err := parseStat([]byte("4242 (short) S 1 2 3")); err == nil {
		t.Fatal("a truncated line parsed")
	}
}

func TestProcessCPUGrowsWithWork(t *testing.T) {
	before, err := Process()
	if err != nil {
		t.Fatal(err)
	}
	x := uint64(1)
	for start := time.Now(); time.Since(start) < 150*time.Millisecond; {
		for range 10000 {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	after, err := Process()
	if err != nil {
		t.Fatal(err)
	}
	if d := after - before; d < 50*time.Millisecond {
		t.Fatalf("150 ms of busy loop counted as %s of CPU (x=%d)", d, x)
	}
}

// The server's CPU grows by (about) what a CPU-bound query spent, and a
// backend that exits keeps counting (through the postmaster's reaped
// children).
func TestServerCPUCountsBackendsThatExited(t *testing.T) {
	ctx := context.Background()
	u := testdb.PostgresServerURL(t)
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	srv, err := FindServer(pid)
	if err != nil {
		t.Fatalf("the test server must run on this machine: %v", err)
	}
	before, err := srv.CPU()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := conn.Exec(ctx, "SELECT count(*) FROM generate_series(1, 3000000) i WHERE i % 7 = 3"); err != nil {
		t.Fatal(err)
	}
	busy := time.Since(start)
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Wait until the postmaster has reaped the backend.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := readStat(pid); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend %d still running 5 s after disconnect", pid)
		}
	}
	after, err := srv.CPU()
	if err != nil {
		t.Fatal(err)
	}
	// The query ran on one core; under a loaded machine it may have got
	// less than all of its wall time, never none.
	if d := after - before; d < busy/4 {
		t.Fatalf("a %s CPU-bound query and the backend's exit added %s of server CPU", busy, d)
	}
	if _, err := FindServer(1); err == nil {
		t.Fatal("pid 1 was taken for a PostgreSQL backend")
	}
}
