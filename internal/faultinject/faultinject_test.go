package faultinject_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tasker-systems/tasker/internal/faultinject"
)

// TestFaultInjection runs the harness. It starts its own PostgreSQL cluster
// and runner processes, so it only runs when asked:
//
//	TASKER_FAULTINJECT=short go test -run TestFaultInjection ./internal/faultinject   # 3 x 250 tasks, CI
//	TASKER_FAULTINJECT=full  go test -run TestFaultInjection -timeout 60m ./internal/faultinject
//
// TASKER_FAULTINJECT_SEEDS (comma-separated) overrides the seeds.
func TestFaultInjection(t *testing.T) {
	mode := os.Getenv("TASKER_FAULTINJECT")
	if mode == "" {
		t.Skip("set TASKER_FAULTINJECT=short or full to run the fault-injection harness")
	}
	if _, err := faultinject.FindPGBin(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	type variant struct {
		seed  uint64
		event bool
	}
	// Both forms add two wide tasks (600 leaves) per seed.
	const wide = 2
	tasks, timeout, killEvery := 250, 3*time.Minute, 1500*time.Millisecond
	variants := []variant{{1, false}, {2, true}, {3, false}}
	if mode == "full" {
		tasks, timeout, killEvery = 1000, 15*time.Minute, 3*time.Second
		variants = []variant{{1, false}, {2, false}, {3, false}, {4, true}}
	}
	if s := os.Getenv("TASKER_FAULTINJECT_SEEDS"); s != "" {
		variants = nil
		for i, f := range strings.Split(s, ",") {
			seed, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64)
			if err != nil {
				t.Fatalf("TASKER_FAULTINJECT_SEEDS: %v", err)
			}
			variants = append(variants, variant{seed, i%2 == 1})
		}
	}
	// Not t.TempDir: its parent is private, and the cluster runs as the
	// postgres OS user when we are root.
	dir, err := os.MkdirTemp("", "tasker-faultinject-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kept the work directory (runner logs, handler log): %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "runner")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/tasker-systems/tasker/internal/faultinject/runner").CombinedOutput()
	if err != nil {
		t.Fatalf("build runner: %v\n%s", err, out)
	}
	for _, v := range variants {
		rep, err := faultinject.Run(context.Background(), faultinject.Config{Seed: v.seed, Tasks: tasks, EventEnqueue: v.event,
			WideTasks: wide, KillEvery: killEvery, Timeout: timeout, Workdir: dir, RunnerBin: bin, Out: testWriter{t},
			KeepDatabase: true}) // removed with dir unless the test fails
		if err != nil {
			t.Fatalf("seed %d: %v", v.seed, err)
		}
		t.Log(rep)
		for _, viol := range rep.Violations {
			t.Errorf("seed %d: %s", v.seed, viol)
		}
		if rep.Kills == 0 || rep.PGRestarts != 1 {
			t.Errorf("seed %d: the run injected too few faults (%d kills, %d restarts)", v.seed, rep.Kills, rep.PGRestarts)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
