// Command harness runs Tasker's fault-injection harness: for each seed it
// starts its own PostgreSQL cluster, three runner processes, creates the
// tasks, kills runners and restarts PostgreSQL while they work, and checks
// every invariant at the end (see package faultinject). It exits 1 when any
// check found a violation.
//
//	go run ./internal/faultinject/harness -tasks 1000 -seeds 1,2,3
//	go run ./internal/faultinject/harness -tasks 100 -seeds 1 -event-enqueue
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tasker-systems/tasker/internal/faultinject"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "harness:", err)
		os.Exit(1)
	}
}

func run() error {
	tasks := flag.Int("tasks", 1000, "tasks per seed")
	seeds := flag.String("seeds", "1,2,3", "comma-separated seeds")
	runners := flag.Int("runners", 3, "runner processes")
	killEvery := flag.Duration("kill-every", 3*time.Second, "mean time between runner kills")
	eventMode := flag.Bool("event-enqueue", false, "use the event-based enqueue handler and check delivery")
	noRestart := flag.Bool("no-pg-restart", false, "do not restart PostgreSQL")
	wide := flag.Int("wide", 2, "tasks of the wide shape (600 leaves) per seed")
	timeout := flag.Duration("timeout", 10*time.Minute, "time limit per seed")
	workdir := flag.String("workdir", "", "directory for clusters and logs (default: a temporary one)")
	keep := flag.Bool("keep", false, "keep the work directory (logs, handler log) and each seed's database")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	dir := *workdir
	if dir == "" {
		d, err := os.MkdirTemp("", "tasker-faultinject-")
		if err != nil {
			return fmt.Errorf("workdir: %w", err)
		}
		dir = d
		if !*keep {
			defer os.RemoveAll(d)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("workdir: %w", err)
	}
	bin := filepath.Join(dir, "runner")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/tasker-systems/tasker/internal/faultinject/runner")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build runner: %w", err)
	}
	failed := false
	for _, s := range strings.Split(*seeds, ",") {
		seed, err := strconv.ParseUint(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return fmt.Errorf("seed %q: %w", s, err)
		}
		rep, err := faultinject.Run(ctx, faultinject.Config{Seed: seed, Tasks: *tasks, Runners: *runners,
			KillEvery: *killEvery, EventEnqueue: *eventMode, NoPostgresRestart: *noRestart, Timeout: *timeout, WideTasks: *wide,
			Workdir: dir, RunnerBin: bin, Out: os.Stderr, KeepDatabase: *keep})
		if err != nil {
			return fmt.Errorf("seed %d: %w", seed, err)
		}
		fmt.Println(rep)
		for _, v := range rep.Violations {
			fmt.Println("  VIOLATION:", v)
		}
		failed = failed || len(rep.Violations) > 0
	}
	if *keep {
		fmt.Fprintln(os.Stderr, "work directory kept:", dir)
	}
	if failed {
		return fmt.Errorf("invariant violations found")
	}
	return nil
}
