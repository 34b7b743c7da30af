// Command compare runs tasker, River and pgbench against the same
// PostgreSQL cluster in one run and writes the comparison (JSON, a
// Markdown table and SVG plots) into an output directory. See
// bench/run.sh, which starts a throwaway durable cluster and builds tasker
// first, and docs/benchmarks.md for the method.
//
// This is a separate module so that the tasker module never depends on River.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// report is everything one run measured.
type report struct {
	Started     time.Time         `json:"started"`
	Machine     string            `json:"machine"`
	Settings    map[string]string `json:"postgres_settings"`
	River       []*riverResult    `json:"river"`
	RiverSweep  []*riverResult    `json:"river_sweep"`
	Pgbench     []*pgbenchResult  `json:"pgbench"`
	Single      []*taskerResult   `json:"tasker_single"`
	Sweep       []*taskerResult   `json:"tasker_sweep"`
	Fanout1k    []*taskerResult   `json:"tasker_fanout_1000"`
	Fanout10k   []*taskerResult   `json:"tasker_fanout_10000"`
	Shapes      []*taskerResult   `json:"tasker_shapes"`
	Latency     []*taskerResult   `json:"tasker_latency"`
	IdleQueries float64           `json:"idle_serve_queries_per_second"`
	// Creation: River's InsertMany alone, tasker's batch creation
	// (InitializeTasks, 1,000 per call) and single creates from 16
	// goroutines, one of each per repetition (issue 18 item 1).
	RiverInsert    []*riverResult  `json:"river_insert"`
	CreateBatch    []*taskerResult `json:"tasker_create_batch"`
	CreateSingle16 []*taskerResult `json:"tasker_create_single_16"`
	// Continuous: creating while working (issue 18 item 2), River and
	// tasker with single creates and batches of 100, and a tasker
	// burn-down of as many tasks for its CPU per task (continuous.go).
	RiverContSingle    []*riverContinuousResult `json:"river_continuous_single"`
	RiverContBatch     []*riverContinuousResult `json:"river_continuous_batch"`
	ContSingle         []*taskerResult          `json:"tasker_continuous_single"`
	ContBatch          []*taskerResult          `json:"tasker_continuous_batch"`
	ContBurnDownSingle []*taskerResult          `json:"tasker_continuous_burndown_single"`
	ContBurnDownBatch  []*taskerResult          `json:"tasker_continuous_burndown_batch"`
	Ratios             map[string]float64
}

// sweepWorkers are the worker counts of the throughput sweep, the same for
// tasker and River. tasker's workers are coordinator goroutines whose
// database calls are batched across tasks, so it keeps gaining well past
// the number of connections.
var sweepWorkers = []int{1, 4, 16, 64, 256, 1024}

func main() {
	var (
		dbURL     = flag.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL server URL (durable settings)")
		bin       = flag.String("tasker", "./tasker", "tasker binary")
		pgbench   = flag.String("pgbench", "/usr/lib/postgresql/15/bin/pgbench", "pgbench binary")
		out       = flag.String("out", "docs/bench", "output directory")
		reps      = flag.Int("reps", 3, "repetitions of the headline runs")
		jobs      = flag.Int("jobs", 10000, "River jobs per headline run")
		tasks     = flag.Int("tasks", 10000, "tasker single-step tasks per headline run (as many as River jobs)")
		workers   = flag.Int("workers", 1024, "tasker workers in the headline runs")
		rworkers  = flag.Int("river-workers", 100, "River MaxWorkers in the headline runs")
		parallel  = flag.Int("max-parallel-steps", 2000, "max_parallel_steps for fan-out tasks")
		sweepN    = flag.Int("sweep-tasks", 3000, "tasks (and River jobs x2) per point of the workers sweep")
		pgSeconds = flag.Int("pgbench-seconds", 10, "length of each pgbench run")
		creation  = flag.Bool("creation-only", false, "only the creation comparison (River InsertMany, tasker batch and 16-goroutine creates)")
		contOnly  = flag.Bool("continuous-only", false, "only the continuous comparison (creating while working, River and tasker)")
		contDur   = flag.Duration("continuous-duration", 30*time.Second, "how long producers create in each continuous run")
		producers = flag.Int("producers", 16, "producers (goroutines) of the continuous runs")
		backlog   = flag.Int("backlog", 4096, "most jobs or tasks outstanding in the continuous runs")
	)
	flag.Parse()
	if *dbURL == "" {
		fmt.Fprintln(os.Stderr, "compare: --database-url or $DATABASE_URL is required")
		os.Exit(2)
	}
	ctx := context.Background()
	if err := run(ctx, &config{db: *dbURL, bin: *bin, pgbench: *pgbench, out: *out, reps: *reps, jobs: *jobs, tasks: *tasks,
		workers: *workers, riverWorkers: *rworkers, parallel: *parallel, sweepN: *sweepN, pgSeconds: *pgSeconds,
		creationOnly: *creation, continuousOnly: *contOnly, contDuration: *contDur, producers: *producers,
		backlog: *backlog}); err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(1)
	}
}

type config struct {
	db, bin, pgbench, out                string
	reps, jobs, tasks, workers, parallel int
	riverWorkers, sweepN, pgSeconds      int
	creationOnly, continuousOnly         bool
	contDuration                         time.Duration
	producers, backlog                   int
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "compare: "+format+"\n", args...)
}

func run(ctx context.Context, c *config) error {
	rep := &report{Started: time.Now().UTC(), Machine: machine(), Ratios: map[string]float64{}}
	settings, err := pgSettings(ctx, c.db)
	if err != nil {
		return err
	}
	rep.Settings = settings
	if settings["fsync"] != "on" || settings["synchronous_commit"] != "on" {
		return fmt.Errorf("the cluster is not durable (fsync=%s, synchronous_commit=%s): start it with PG_DURABLE=1",
			settings["fsync"], settings["synchronous_commit"])
	}
	riverURL, err := recreateDatabase(ctx, c.db, "river_bench")
	if err != nil {
		return err
	}
	pgbURL, err := recreateDatabase(ctx, c.db, "pgbench_bench")
	if err != nil {
		return err
	}
	if c.continuousOnly {
		if err := continuousRuns(ctx, c, riverURL, rep); err != nil {
			return err
		}
		fmt.Print(continuousMarkdown(rep))
		return writeReport(c.out, "continuous", rep, continuousMarkdown(rep))
	}
	if err := creationRuns(ctx, c, riverURL, rep); err != nil {
		return err
	}
	if c.creationOnly {
		fmt.Print(creationMarkdown(rep))
		return writeReport(c.out, "creation", rep, creationMarkdown(rep))
	}
	single := func(n, w int) []string {
		return []string{"--shape", "single", "--tasks", strconv.Itoa(n), "--workers", strconv.Itoa(w)}
	}
	for i := range c.reps {
		logf("repetition %d of %d", i+1, c.reps)
		r, err := riverBench(ctx, riverURL, c.jobs, c.riverWorkers, false)
		if err != nil {
			return err
		}
		logf("  river %d workers: %.0f jobs/s", r.Workers, r.JobsPerSec)
		rep.River = append(rep.River, r)

		t, err := taskerBench(ctx, c.bin, c.db, "single", single(c.tasks, c.workers)...)
		if err != nil {
			return err
		}
		logf("  tasker single %d workers: %.0f tasks/s", t.Workers, t.TasksPerSecond)
		rep.Single = append(rep.Single, t)

		p, err := pgbenchUpdate(ctx, c.pgbench, pgbURL, 100000, 16, c.pgSeconds)
		if err != nil {
			return err
		}
		logf("  pgbench 16 clients: %.0f tps", p.TPS)
		rep.Pgbench = append(rep.Pgbench, p)

		f, err := taskerBench(ctx, c.bin, c.db, "fanout 1000", "--shape", "fanout", "--width", "1000",
			"--max-parallel-steps", strconv.Itoa(c.parallel))
		if err != nil {
			return err
		}
		logf("  tasker fanout 1000: %.0f steps/s", f.StepsPerSecond)
		rep.Fanout1k = append(rep.Fanout1k, f)

		f, err = taskerBench(ctx, c.bin, c.db, "fanout 10000", "--shape", "fanout", "--width", "10000",
			"--max-parallel-steps", strconv.Itoa(c.parallel))
		if err != nil {
			return err
		}
		logf("  tasker fanout 10000: %.0f steps/s", f.StepsPerSecond)
		rep.Fanout10k = append(rep.Fanout10k, f)
	}

	logf("latency: hot runner, one task at a time")
	for _, shape := range []string{"chain", "single", "diamond"} {
		r, err := taskerBench(ctx, c.bin, c.db, shape+" continuous backlog 1", "--mode", "continuous", "--shape", shape,
			"--backlog", "1", "--workers", "4", "--duration", "10s")
		if err != nil {
			return err
		}
		rep.Latency = append(rep.Latency, r)
	}
	logf("other shapes (burn-down)")
	for _, args := range [][]string{
		{"--shape", "chain", "--tasks", "1000"},
		{"--shape", "diamond", "--tasks", "1000"},
		{"--shape", "random", "--tasks", "40", "--width", "50"},
	} {
		r, err := taskerBench(ctx, c.bin, c.db, args[1], append(args, "--workers", strconv.Itoa(c.workers))...)
		if err != nil {
			return err
		}
		rep.Shapes = append(rep.Shapes, r)
	}
	logf("workers sweep")
	for _, w := range sweepWorkers {
		t, err := taskerBench(ctx, c.bin, c.db, "sweep", single(c.sweepN, w)...)
		if err != nil {
			return err
		}
		rep.Sweep = append(rep.Sweep, t)
		logf("  tasker %d workers: %.0f tasks/s", w, t.TasksPerSecond)
	}
	for _, w := range sweepWorkers {
		r, err := riverBench(ctx, riverURL, 2*c.sweepN, w, false)
		if err != nil {
			return err
		}
		rep.RiverSweep = append(rep.RiverSweep, r)
		logf("  river %d workers: %.0f jobs/s", w, r.JobsPerSec)
	}
	logf("idle tasker serve")
	if rep.IdleQueries, err = idleServe(ctx, c.bin, c.db); err != nil {
		return err
	}

	riverJobs := median(rep.River, func(r *riverResult) float64 { return r.JobsPerSec })
	singleTasks := median(rep.Single, func(r *taskerResult) float64 { return r.TasksPerSecond })
	pgbTPS := median(rep.Pgbench, func(r *pgbenchResult) float64 { return r.TPS })
	fanSteps := median(rep.Fanout1k, func(r *taskerResult) float64 { return r.StepsPerSecond })
	rep.Ratios["single_tasks_per_river_jobs"] = singleTasks / riverJobs
	rep.Ratios["fanout1000_steps_per_pgbench_tps"] = fanSteps / pgbTPS
	fan10kSteps := median(rep.Fanout10k, func(r *taskerResult) float64 { return r.StepsPerSecond })
	rep.Ratios["fanout10000_steps_per_pgbench_tps"] = fan10kSteps / pgbTPS
	if err := writeReport(c.out, "creation", rep, creationMarkdown(rep)); err != nil {
		return err
	}
	if err := continuousRuns(ctx, c, riverURL, rep); err != nil {
		return err
	}
	if err := writeReport(c.out, "continuous", rep, continuousMarkdown(rep)); err != nil {
		return err
	}

	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	data, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(filepath.Join(c.out, "results.json"), data, 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(c.out, "results.md"), []byte(markdown(rep, riverJobs, singleTasks, pgbTPS, fanSteps)), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	if err := plots(rep, c.out); err != nil {
		return err
	}
	fmt.Print(markdown(rep, riverJobs, singleTasks, pgbTPS, fanSteps))
	return nil
}

func median[T any](xs []T, f func(T) float64) float64 {
	vs := make([]float64, len(xs))
	for i, x := range xs {
		vs[i] = f(x)
	}
	slices.Sort(vs)
	if len(vs) == 0 {
		return 0
	}
	return vs[len(vs)/2]
}

func machine() string {
	out, _ := exec.Command("sh", "-c", "nproc; grep -m1 'model name' /proc/cpuinfo | cut -d: -f2; free -g | awk '/Mem/ {print $2 \" GiB RAM\"}'").Output()
	return strings.Join(strings.Fields(strings.ReplaceAll(string(out), "\n", " ; ")), " ")
}

func pgSettings(ctx context.Context, dbURL string) (map[string]string, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	out := map[string]string{}
	for _, name := range []string{"server_version", "fsync", "synchronous_commit", "full_page_writes", "shared_buffers", "wal_level"} {
		var v string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
			return nil, fmt.Errorf("setting %s: %w", name, err)
		}
		out[name] = v
	}
	return out, nil
}

// idleServe starts `tasker serve` (workers only) on a database of its own,
// waits for it to settle, and counts its transactions over 30 s with
// pg_stat_database.
func idleServe(ctx context.Context, bin, serverURL string) (float64, error) {
	dbURL, err := recreateDatabase(ctx, serverURL, "tasker_idle")
	if err != nil {
		return 0, err
	}
	cmd := exec.CommandContext(ctx, bin, "serve", "--listen", "off", "--migrate", "--database-url", dbURL, "--log-level", "warn")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start tasker serve: %w", err)
	}
	defer func() { _ = cmd.Process.Signal(os.Interrupt); _ = cmd.Wait() }()
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	count := func() (int64, error) {
		var n int64
		_, _ = conn.Exec(ctx, "SELECT pg_stat_clear_snapshot()")
		err := conn.QueryRow(ctx, "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'tasker_idle'").Scan(&n)
		return n, err
	}
	time.Sleep(15 * time.Second) // migrations and start-up, and PostgreSQL's stats flush of idle backends
	n0, err := count()
	if err != nil {
		return 0, fmt.Errorf("idle stats: %w", err)
	}
	const window = 30 * time.Second
	time.Sleep(window)
	n1, err := count()
	if err != nil {
		return 0, fmt.Errorf("idle stats: %w", err)
	}
	return float64(n1-n0) / window.Seconds(), nil
}

// creationRuns measures creation alone, c.reps times, each repetition
// River's InsertMany of c.jobs jobs, then tasker creating c.tasks
// single-step tasks in batches of 1,000 (one producer), then one by one from
// 16 goroutines (coalesced by the engine). The ratios use the medians.
func creationRuns(ctx context.Context, c *config, riverURL string, rep *report) error {
	logf("creation: River InsertMany, tasker batch creation, tasker single creates from 16 goroutines")
	n := strconv.Itoa(c.tasks)
	for i := range c.reps {
		r, err := riverBench(ctx, riverURL, c.jobs, c.riverWorkers, true)
		if err != nil {
			return err
		}
		rep.RiverInsert = append(rep.RiverInsert, r)
		b, err := taskerBench(ctx, c.bin, c.db, "create batch 1000", "--create-only", "--tasks", n, "--create-batch", "1000",
			"--producers", "1")
		if err != nil {
			return err
		}
		rep.CreateBatch = append(rep.CreateBatch, b)
		s, err := taskerBench(ctx, c.bin, c.db, "create single x16", "--create-only", "--tasks", n, "--producers", "16")
		if err != nil {
			return err
		}
		rep.CreateSingle16 = append(rep.CreateSingle16, s)
		logf("  %d: River InsertMany %.0f jobs/s; tasker batch %.0f tasks/s, single x16 %.0f tasks/s", i+1,
			r.InsertJobsPerSec, b.Init.TasksPerSecond, s.Init.TasksPerSecond)
	}
	river := median(rep.RiverInsert, func(r *riverResult) float64 { return r.InsertJobsPerSec })
	rep.Ratios["create_batch_tasks_per_river_insertmany_jobs"] =
		median(rep.CreateBatch, func(t *taskerResult) float64 { return t.Init.TasksPerSecond }) / river
	return nil
}

// writeReport writes the results (JSON) and a Markdown table under dir.
func writeReport(dir, name string, rep *report, md string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	data, _ := json.MarshalIndent(rep, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, name+".json"), data, 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".md"), []byte(md), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}
