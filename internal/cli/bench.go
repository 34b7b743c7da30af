package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasker-systems/tasker/internal/bench"
)

// benchFlags are the flags of `tasker bench`.
type benchFlags struct {
	cfg   bench.Config
	mode  string
	shape string
	json  bool
	quiet bool
	// cpuProfile, when set, receives a CPU profile of the run.
	cpuProfile string
	// memProfile, when set, receives an allocation profile of the run.
	memProfile string
}

func (a *app) benchCommand() *cobra.Command {
	var f benchFlags
	shapes := make([]string, len(bench.Shapes))
	for i, s := range bench.Shapes {
		shapes[i] = string(s)
	}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure throughput and latency with no-op workloads",
		Long: `Run no-op tasks of one DAG shape through the real engine and measure
tasks/s, steps/s, step handoff latency (a parent's completion to its child's
start), end-to-end task latency (InitializeTask to task.completed), database
round trips per step and peak RSS.

Shapes: ` + strings.Join(shapes, ", ") + `. --width sets the chain length (default 4),
the fan-out width (1000) or the random DAG size (50).

Modes: burndown creates --tasks tasks first, then times the runner draining
them; continuous keeps --backlog tasks outstanding for --duration
(--backlog 1 measures a hot runner's latency).

Without --database-url the run uses a SQLite file in a temporary directory.
On PostgreSQL it creates a private schema, dropped afterwards (--keep-schema
keeps it). Progress goes to stderr; --json prints the result on stdout.`,
		Example: `  tasker bench --shape single --tasks 2000 --workers 8
  tasker bench --shape fanout --width 10000 --max-parallel-steps 200 --database-url "$DATABASE_URL"
  tasker bench --mode continuous --shape chain --backlog 1 --duration 10s --json`,
		Args: noArgs,
		RunE: wrapRun(func(cmd *cobra.Command, _ []string) error {
			f.cfg.DatabaseURL = a.databaseURL
			f.cfg.Mode, f.cfg.Shape = bench.Mode(f.mode), bench.Shape(f.shape)
			if !f.quiet {
				f.cfg.Progress = a.opts.Stderr
			}
			if f.cpuProfile != "" {
				pf, err := os.Create(f.cpuProfile)
				if err != nil {
					return fmt.Errorf("bench: cpu profile: %w", err)
				}
				defer pf.Close()
				if err := pprof.StartCPUProfile(pf); err != nil {
					return fmt.Errorf("bench: cpu profile: %w", err)
				}
				defer pprof.StopCPUProfile()
			}
			if f.memProfile != "" {
				runtime.MemProfileRate = 64 << 10 // sample every 64 KiB allocated (the default is 512 KiB)
			}
			res, err := bench.Run(cmd.Context(), f.cfg)
			if err != nil {
				return fmt.Errorf("bench: %w", err)
			}
			if f.memProfile != "" {
				if err := writeHeapProfile(f.memProfile); err != nil {
					return fmt.Errorf("bench: memory profile: %w", err)
				}
			}
			if f.json {
				enc := json.NewEncoder(a.opts.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			printBench(a.opts.Stdout, res)
			return nil
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&f.mode, "mode", string(bench.ModeBurnDown), "burndown or continuous")
	fl.StringVar(&f.shape, "shape", string(bench.ShapeSingle), "workload shape: "+strings.Join(shapes, ", "))
	fl.IntVar(&f.cfg.Width, "width", 0, "chain length, fan-out width or random DAG size (0: shape default)")
	fl.IntVar(&f.cfg.Tasks, "tasks", 0, "tasks in burndown mode (0: shape default)")
	fl.IntVar(&f.cfg.Workers, "workers", 8, "tasks the runner handles at once")
	fl.IntVar(&f.cfg.MaxParallelSteps, "max-parallel-steps", 0, "max_parallel_steps of the template (0: 10, or 100 for fanout and random)")
	fl.DurationVar(&f.cfg.Duration, "duration", 10*time.Second, "length of a continuous run")
	fl.IntVar(&f.cfg.Backlog, "backlog", 0, "tasks kept outstanding in continuous mode (0: 2 x workers)")
	fl.IntVar(&f.cfg.Producers, "producers", 0, "goroutines creating tasks (0: 4 on PostgreSQL, 1 on SQLite)")
	fl.DurationVar(&f.cfg.ClaimCooldown, "claim-cooldown", 0, "least time between two runner claims that find work (0: the engine's default, 10ms; negative: none)")
	fl.BoolVar(&f.cfg.IdempotencyKeys, "idempotency-keys", false, "give every task an idempotency key of its own")
	fl.IntVar(&f.cfg.CreateBatch, "create-batch", 0, "producers create tasks in batches of this many (InitializeTasks; 0: one InitializeTask per task)")
	fl.BoolVar(&f.cfg.CreateOnly, "create-only", false, "burndown: stop once the tasks are created (measure creation only)")
	fl.DurationVar(&f.cfg.PollInterval, "poll-interval", time.Second, "runner polling floor")
	fl.Uint64Var(&f.cfg.Seed, "seed", 1, "seed of the random shape")
	fl.IntVar(&f.cfg.HandlerLimit, "handler-limit", 0, "limit the steps' handler class to this many attempts running at once across runners (0: none)")
	fl.Float64Var(&f.cfg.RateLimit, "rate-limit", 0, "put every step under one shared rate limit of this many steps a second, burst the same (0: none)")
	fl.DurationVar(&f.cfg.Timeout, "timeout", 10*time.Minute, "abort a run that takes longer")
	fl.BoolVar(&f.cfg.KeepSchema, "keep-schema", false, "keep the PostgreSQL schema the run created")
	fl.BoolVar(&f.cfg.Metrics, "metrics", false, "run the Prometheus collectors of tasker serve, to measure their cost")
	fl.StringVar(&f.cfg.SchemaSQL, "schema-sql", "", "SQL run in the run's PostgreSQL schema after migrating, for experiments (e.g. \"DROP INDEX tasker_workflow_steps_lease\")")
	fl.IntVar(&f.cfg.ConcurrencyKeys, "concurrency-keys", 0, "give the template a concurrency key and spread the tasks over this many keys (0: no key)")
	fl.IntVar(&f.cfg.ConcurrencyLimit, "concurrency-limit", 1, "the concurrency key's limit (with --concurrency-keys)")
	fl.BoolVar(&f.json, "json", false, "print the result as JSON on stdout")
	fl.BoolVar(&f.quiet, "quiet", false, "no progress lines on stderr")
	fl.StringVar(&f.cpuProfile, "cpuprofile", "", "write a Go CPU profile of the whole run to this file (go tool pprof)")
	fl.StringVar(&f.memProfile, "memprofile", "", "write a Go allocation profile of the whole run to this file (go tool pprof -sample_index alloc_space)")
	return cmd
}

func writeHeapProfile(path string) error {
	pf, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(pf, 0); err != nil {
		_ = pf.Close()
		return err
	}
	return pf.Close()
}

func printBench(w io.Writer, r *bench.Result) {
	fmt.Fprintf(w, "tasker bench: %s %s on %s, %d step(s)/task, %d workers, max_parallel_steps %d\n",
		r.Mode, r.Shape, r.Dialect, r.StepsPerTask, r.Workers, r.MaxParallelSteps)
	if r.Init != nil {
		fmt.Fprintf(w, "  create:      %d tasks in %.2fs = %.0f tasks/s, %.1f round trips/task, latency p50 %.2f ms p99 %.2f ms\n",
			r.Init.Tasks, r.Init.Seconds, r.Init.TasksPerSecond, r.Init.RoundTripsPerTask, r.Init.Latency.P50, r.Init.Latency.P99)
		if r.Init.DatabaseUSPerTask != nil {
			fmt.Fprintf(w, "  create CPU:  tasker %.1f µs/task, PostgreSQL %.1f µs/task\n", r.Init.TaskerUSPerTask, *r.Init.DatabaseUSPerTask)
		} else {
			fmt.Fprintf(w, "  create CPU:  tasker %.1f µs/task\n", r.Init.TaskerUSPerTask)
		}
	}
	if r.Init != nil && r.TasksCompleted == 0 && r.Seconds == 0 {
		return // --create-only
	}
	fmt.Fprintf(w, "  run:         %d tasks (%d failed), %d steps in %.2fs\n", r.TasksCompleted, r.TasksFailed, r.StepsCompleted, r.Seconds)
	fmt.Fprintf(w, "  throughput:  %.0f tasks/s, %.0f steps/s\n", r.TasksPerSecond, r.StepsPerSecond)
	lat := func(name string, l bench.Latency) {
		if l.N == 0 {
			fmt.Fprintf(w, "  %-12s n/a\n", name+":")
			return
		}
		fmt.Fprintf(w, "  %-12s p50 %.2f ms, p95 %.2f ms, p99 %.2f ms, max %.2f ms (n=%d)\n", name+":", l.P50, l.P95, l.P99, l.Max, l.N)
	}
	lat("handoff", r.Handoff)
	lat("task e2e", r.TaskLatency)
	fmt.Fprintf(w, "  database:    %.2f round trips/step (%d statements incl. BEGIN/COMMIT)\n", r.RoundTripsPerStep, r.RoundTrips)
	if c := r.CPU; c != nil {
		if c.DatabaseSeconds != nil {
			fmt.Fprintf(w, "  CPU:         tasker %.2fs (%.1f µs/step), PostgreSQL %.2fs (%.1f µs/step)\n",
				c.TaskerSeconds, c.TaskerUSPerStep, *c.DatabaseSeconds, *c.DatabaseUSPerStep)
		} else {
			fmt.Fprintf(w, "  CPU:         tasker %.2fs (%.1f µs/step)\n", c.TaskerSeconds, c.TaskerUSPerStep)
		}
	}
	if r.WAL != nil {
		fmt.Fprintf(w, "  WAL:         %.1f MiB (%.0f bytes/step)\n", float64(r.WAL.Bytes)/(1<<20), r.WAL.BytesPerStep)
	}
	fmt.Fprintf(w, "  peak RSS:    %.1f MiB\n", r.PeakRSSMB)
}
