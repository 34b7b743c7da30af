//go:build linux

package cpustat

import (
	"context"
	"os"
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

// Process counts the CPU this process spends. The work is a fixed amount
// of CPU, not of wall time: the loop runs until the kernel's own per-process
// account (/proc/self/stat, read independently of Process) has grown by
// 200 ms, however long a loaded machine takes to grant it. A wall-clock
// loop counted as CPU failed with both cores busy ("150 ms of busy loop
// counted as 48 ms of CPU").
func TestProcessCPUGrowsWithWork(t *testing.T) {
	const work = 200 * time.Millisecond
	kernelCPU := func() time.Duration {
		st, err := readStat(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		return time.Duration(st.utime+st.stime) * time.Second / userHZ
	}
	before, err := Process()
	if err != nil {
		t.Fatal(err)
	}
	kBefore := kernelCPU()
	x := uint64(1)
	deadline := time.Now().Add(2 * time.Minute)
	for kernelCPU()-kBefore < work {
		if time.Now().After(deadline) {
			t.Fatalf("the kernel counted %s of CPU in 2 minutes of busy loop", kernelCPU()-kBefore)
		}
		for range 100000 {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
	after, err := Process()
	if err != nil {
		t.Fatal(err)
	}
	// The kernel's account moves in clock ticks (10 ms); half is plenty of
	// room and still catches a Process that does not count this work.
	if d := after - before; d < work/2 {
		t.Fatalf("%s of CPU (by /proc/self/stat) counted as %s by Process (x=%d)", work, d, x)
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
	backendCPU := func() time.Duration {
		st, err := readStat(pid)
		if err != nil {
			t.Fatal(err)
		}
		return time.Duration(st.utime+st.stime) * time.Second / userHZ
	}
	before, err := srv.CPU()
	if err != nil {
		t.Fatal(err)
	}
	bBefore := backendCPU()
	if _, err := conn.Exec(ctx, "SELECT count(*) FROM generate_series(1, 3000000) i WHERE i % 7 = 3"); err != nil {
		t.Fatal(err)
	}
	// What the query cost, by the kernel's account of the backend itself
	// (not the wall time, which a loaded machine stretches).
	spent := backendCPU() - bBefore
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Wait until the postmaster has reaped the backend.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if _, err := readStat(pid); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend %d still running a minute after disconnect", pid)
		}
	}
	after, err := srv.CPU()
	if err != nil {
		t.Fatal(err)
	}
	if spent < 20*time.Millisecond {
		t.Fatalf("a 3-million-row query took %s of the backend's CPU", spent)
	}
	// The backend's CPU is counted after it exited (its ticks move to the
	// postmaster's cutime/cstime); one clock tick of slack.
	if d := after - before; d < spent-time.Second/userHZ {
		t.Fatalf("a query that took %s of its backend's CPU added %s of server CPU once the backend exited", spent, d)
	}
	if _, err := FindServer(1); err == nil {
		t.Fatal("pid 1 was taken for a PostgreSQL backend")
	}
}
