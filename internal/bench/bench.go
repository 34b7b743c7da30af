// Package bench is the workload generator behind `tasker bench`: it creates
// tasks of one DAG shape whose steps are all no-ops, runs them with the real
// engine against PostgreSQL or a temporary SQLite file, and measures
// throughput (tasks/s, steps/s), step handoff latency (a parent's completion
// to a child's start), end-to-end task latency, database round trips per
// step and peak RSS.
//
// Two modes: burn-down creates every task first and then measures how fast
// the runner drains them; continuous keeps a fixed number of tasks
// outstanding for a duration (a backlog of 1 measures the latency of a hot,
// otherwise idle runner).
//
// Timings come from the engine's own lifecycle events (step.started carries
// the claim time, step.completed the time the result was recorded,
// task.completed the finalizer's time), collected by a subscriber with a
// buffer large enough that none is dropped; a run that loses events fails
// instead of reporting wrong numbers.
package bench

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/internal/builtin"
	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/internal/redact"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/store/postgres"
	"github.com/tasker-systems/tasker/internal/store/sqlite"
	"github.com/tasker-systems/tasker/internal/template"
)

// Mode selects how tasks are fed to the runner.
type Mode string

// The modes.
const (
	// ModeBurnDown creates every task first, then drains them.
	ModeBurnDown Mode = "burndown"
	// ModeContinuous keeps Backlog tasks outstanding for Duration.
	ModeContinuous Mode = "continuous"
)

// Config configures a run. Zero values mean the documented defaults.
type Config struct {
	// DatabaseURL is a postgres:// URL or sqlite:PATH; "" means a SQLite file
	// in a temporary directory, removed afterwards.
	DatabaseURL string
	// KeepSchema keeps the private PostgreSQL schema a run creates (by
	// default it is dropped at the end).
	KeepSchema bool
	// SchemaSQL runs in the private PostgreSQL schema after the migrations,
	// before any task is created: for experiments with the schema (drop an
	// index, change a fillfactor) whose effect the run then measures.
	SchemaSQL string
	// Mode defaults to ModeBurnDown.
	Mode Mode
	// Shape defaults to ShapeSingle.
	Shape Shape
	// Width is the chain length, fan-out width or random DAG size (shape
	// defaults: chain 4, fanout 1000, random 50).
	Width int
	// Tasks is the task count in burn-down mode (shape default).
	Tasks int
	// Workers is how many tasks the runner handles at once. Default 8.
	Workers int
	// MaxParallelSteps is the template's max_parallel_steps. Default 10, or
	// 100 for fanout and random.
	MaxParallelSteps int
	// Duration of a continuous run. Default 10 s.
	Duration time.Duration
	// Backlog is how many tasks a continuous run keeps outstanding. Default
	// 2 x Workers.
	Backlog int
	// Producers create tasks concurrently. Default 4 (1 on SQLite).
	Producers int
	// CreateBatch, when positive, makes each producer create tasks with
	// one InitializeTasks call per CreateBatch tasks instead of one
	// InitializeTask call per task (concurrent InitializeTask calls are
	// coalesced by the engine either way).
	CreateBatch int
	// CreateOnly ends a burn-down run once its tasks are created: only the
	// creation phase (Result.Init) is measured.
	CreateOnly bool
	// PollInterval is the runner's polling floor. Default 1 s.
	PollInterval time.Duration
	// ClaimCooldown is the engine's Config.ClaimCooldown (0: the engine's
	// default; negative: none), to measure its effect.
	ClaimCooldown time.Duration
	// Seed makes the random shape reproducible. Default 1.
	Seed uint64
	// RateLimit, when above 0, puts every step under one shared rate limit
	// of that many steps a second (burst the same): the cost of taking a
	// token per step (see withRateLimit).
	RateLimit float64
	// HandlerLimit, when above 0, limits the handler class of every step to
	// that many attempts running at once: the cost of taking a slot per
	// step (see withHandlerLimit).
	HandlerLimit int
	// Timeout aborts a run that does not finish. Default 10 min.
	Timeout time.Duration
	// Progress, when not nil, receives a progress line every second.
	Progress io.Writer
	// Logger receives the engine's warnings. Defaults to discarding them.
	Logger *slog.Logger
	// Metrics runs the Prometheus collectors of `tasker serve` (event
	// subscriber, timed store, a scrape every 5 s), to measure their cost.
	Metrics bool
	// ConcurrencyKeys, when positive, gives the template a concurrency key
	// (docs/flow-control.md#concurrency-keys) with limit
	// ConcurrencyLimit (default 1), and spreads the tasks round-robin
	// over that many keys: a number at least the tasks outstanding
	// measures admission alone, a smaller one also its waiting.
	ConcurrencyKeys  int
	ConcurrencyLimit int
	// IdempotencyKeys gives every task an idempotency key of its own, as
	// an application that creates each task once per business event does.
	IdempotencyKeys bool
}

// Result is what a run measured. Durations are in milliseconds.
type Result struct {
	Mode             Mode   `json:"mode"`
	Shape            Shape  `json:"shape"`
	Dialect          string `json:"dialect"`
	StepsPerTask     int    `json:"steps_per_task"`
	Workers          int    `json:"workers"`
	MaxParallelSteps int    `json:"max_parallel_steps"`
	Backlog          int    `json:"backlog,omitempty"`
	Producers        int    `json:"producers"`
	CreateBatch      int    `json:"create_batch,omitempty"`
	IdempotencyKeys  bool   `json:"idempotency_keys,omitempty"`

	// Init is the creation phase of a burn-down run (tasks initialized
	// before the runner starts).
	Init *InitStats `json:"init,omitempty"`

	Seconds        float64 `json:"seconds"`
	TasksCompleted int     `json:"tasks_completed"`
	TasksFailed    int     `json:"tasks_failed"`
	StepsCompleted int     `json:"steps_completed"`
	TasksPerSecond float64 `json:"tasks_per_second"`
	StepsPerSecond float64 `json:"steps_per_second"`

	// Handoff is a parent's completion to its child's start, for every step
	// with parents (the last parent to complete counts).
	Handoff Latency `json:"handoff_ms"`
	// TaskLatency is from just before InitializeTask to task.completed.
	TaskLatency Latency `json:"task_latency_ms"`

	// RoundTrips counts the statements sent while the runner worked
	// (BEGIN and COMMIT included); per step is RoundTrips / StepsCompleted.
	RoundTrips        int64   `json:"round_trips"`
	RoundTripsPerStep float64 `json:"round_trips_per_step"`
	PeakRSSMB         float64 `json:"peak_rss_mb"`
	EventsDropped     int64   `json:"events_dropped"`

	// CPU is the CPU time the timed phase cost, in this process and in the
	// database server.
	CPU *CPUStats `json:"cpu,omitempty"`
	// WAL is the PostgreSQL write-ahead log the timed phase wrote.
	WAL *WALStats `json:"wal,omitempty"`
}

// WALStats is the write-ahead log written in the timed phase, by the whole
// cluster (pg_current_wal_insert_lsn before and after): a measure of the
// writes a step costs that, unlike time, does not depend on the machine's
// load. Full-page images (the first change of a page after a checkpoint)
// make it vary with checkpoint timing.
type WALStats struct {
	Bytes        int64   `json:"bytes"`
	BytesPerStep float64 `json:"bytes_per_step"`
}

// CPUStats is the CPU time of the timed phase (burn-down: the runner
// draining the tasks; continuous: the whole run, creation included),
// total and per completed step. On SQLite the database works inside this
// process, so its time is in Tasker's.
type CPUStats struct {
	// TaskerSeconds is this process's user plus system time: the engine,
	// the database driver and the bench's own event recording.
	TaskerSeconds float64 `json:"tasker_seconds"`
	// DatabaseSeconds is the PostgreSQL cluster's (postmaster and every
	// backend, not only this run's); absent when the server does not run
	// on this machine.
	DatabaseSeconds *float64 `json:"database_seconds,omitempty"`
	// TaskerUSPerStep and DatabaseUSPerStep divide them by the steps
	// completed, in microseconds.
	TaskerUSPerStep   float64  `json:"tasker_us_per_step"`
	DatabaseUSPerStep *float64 `json:"database_us_per_step,omitempty"`
}

// InitStats measures task creation.
type InitStats struct {
	Tasks             int     `json:"tasks"`
	Seconds           float64 `json:"seconds"`
	TasksPerSecond    float64 `json:"tasks_per_second"`
	RoundTripsPerTask float64 `json:"round_trips_per_task"`
	// LatencyMS is the duration of the InitializeTask (or InitializeTasks)
	// call that created a task.
	Latency Latency `json:"latency_ms"`
	// TaskerUSPerTask, DatabaseUSPerTask and WALBytesPerTask are what one
	// created task cost: this process's CPU, the PostgreSQL cluster's CPU
	// (absent when not measured) and the write-ahead log written.
	TaskerUSPerTask   float64  `json:"tasker_us_per_task"`
	DatabaseUSPerTask *float64 `json:"database_us_per_task,omitempty"`
	WALBytesPerTask   *float64 `json:"wal_bytes_per_task,omitempty"`
}

// Latency summarizes a distribution in milliseconds.
type Latency struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
	// Quantiles holds the 0th, 1st, ..., 100th percentile, for plots.
	Quantiles []float64 `json:"quantiles,omitempty"`
}

func (c Config) withDefaults() Config {
	c.Mode = cmp.Or(c.Mode, ModeBurnDown)
	c.Shape = cmp.Or(c.Shape, ShapeSingle)
	if c.Width == 0 {
		c.Width = c.Shape.defaultWidth()
	}
	if c.Tasks == 0 {
		c.Tasks = c.Shape.defaultTasks()
	}
	c.Workers = cmp.Or(c.Workers, 8)
	if c.MaxParallelSteps == 0 {
		c.MaxParallelSteps = 10
		if c.Shape == ShapeFanout || c.Shape == ShapeRandom {
			c.MaxParallelSteps = 100
		}
	}
	c.Duration = cmp.Or(c.Duration, 10*time.Second)
	c.Backlog = cmp.Or(c.Backlog, 2*c.Workers)
	c.PollInterval = cmp.Or(c.PollInterval, time.Second)
	c.Seed = cmp.Or(c.Seed, 1)
	c.Timeout = cmp.Or(c.Timeout, 10*time.Minute)
	if c.Producers == 0 {
		c.Producers = 1 // SQLite has one writer
		if strings.HasPrefix(c.DatabaseURL, "postgres") {
			c.Producers = 4
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.Mode != ModeBurnDown && c.Mode != ModeContinuous:
		return fmt.Errorf("mode %q: want %s or %s", c.Mode, ModeBurnDown, ModeContinuous)
	case c.Tasks < 1:
		return errors.New("tasks must be at least 1")
	case c.Workers < 1:
		return errors.New("workers must be at least 1")
	case c.MaxParallelSteps < 1:
		return errors.New("max parallel steps must be at least 1")
	case c.Backlog < 1:
		return errors.New("backlog must be at least 1")
	case c.Producers < 0:
		return errors.New("producers cannot be negative")
	case c.CreateBatch < 0:
		return errors.New("create batch cannot be negative")
	case c.CreateOnly && c.Mode != ModeBurnDown:
		return errors.New("create-only measures the creation phase of a burn-down run")
	case c.SchemaSQL != "" && !strings.HasPrefix(c.DatabaseURL, "postgres"):
		return errors.New("--schema-sql needs a PostgreSQL database (--database-url postgres://...)")
	}
	return nil
}

// roundTripper is the optional capability of stores that count statements.
type roundTripper interface{ RoundTrips() int64 }

// Run runs one benchmark and returns its measurements.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	tmpl, err := buildTemplate(cfg.Shape, cfg.Width, cfg.MaxParallelSteps, cfg.Seed)
	if err != nil {
		return nil, err
	}
	if cfg.ConcurrencyKeys > 0 {
		tmpl.Concurrency = &template.Concurrency{Key: "bench-${context.k}", Limit: max(cfg.ConcurrencyLimit, 1)}
	}
	withRateLimit(tmpl, cfg.RateLimit)
	withHandlerLimit(tmpl, cfg.HandlerLimit)
	reg := template.NewRegistry()
	if err := reg.Add(tmpl); err != nil {
		return nil, fmt.Errorf("bench template: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	st, probe, closeStore, err := openStore(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	defer closeStore()
	engStore, startMetrics := store.Store(st), func(*engine.Bus) func() { return func() {} }
	if cfg.Metrics {
		engStore, startMetrics = withMetrics(st)
	}
	eng, err := engine.New(engine.Config{Store: engStore, Templates: reg, PollInterval: cfg.PollInterval,
		ClaimCooldown: cfg.ClaimCooldown, Owner: "bench-" + randHex(4), Logger: cfg.Logger, RequireHandlers: true})
	if err != nil {
		return nil, fmt.Errorf("bench engine: %w", err)
	}
	for name, h := range builtin.Handlers(builtin.Options{}) {
		eng.RegisterHandler(name, h)
	}
	defer startMetrics(eng.Bus())()

	res := &Result{Mode: cfg.Mode, Shape: cfg.Shape, Dialect: st.Dialect(), StepsPerTask: len(tmpl.Steps),
		Workers: cfg.Workers, MaxParallelSteps: cfg.MaxParallelSteps, Producers: cfg.Producers, CreateBatch: cfg.CreateBatch,
		IdempotencyKeys: cfg.IdempotencyKeys}
	rec := newRecorder(eng.Bus(), tmpl, len(tmpl.Steps)*cfg.Tasks)
	defer rec.stop()
	r := &runner{cfg: cfg, eng: eng, st: st, probe: probe, rec: rec, res: res}
	if cfg.Mode == ModeBurnDown {
		err = r.burnDown(ctx)
	} else {
		res.Backlog = cfg.Backlog
		err = r.continuous(ctx)
	}
	if err != nil {
		return nil, err
	}
	rec.stop()
	res.EventsDropped = eng.Bus().Dropped()
	if res.EventsDropped > 0 {
		return nil, fmt.Errorf("the bench subscriber lost %d events; the numbers would be wrong", res.EventsDropped)
	}
	res.Handoff, res.TaskLatency = rec.latencies()
	if res.StepsCompleted > 0 {
		res.RoundTripsPerStep = float64(res.RoundTrips) / float64(res.StepsCompleted)
	}
	res.PeakRSSMB = peakRSSMB()
	return res, nil
}

type runner struct {
	// keyed counts the tasks given a concurrency key (Config.ConcurrencyKeys).
	keyed atomic.Int64
	// idem numbers the tasks' idempotency keys (Config.IdempotencyKeys).
	idem  atomic.Int64
	cfg   Config
	eng   *engine.Engine
	st    store.Store
	probe *probe // the PostgreSQL server, else nil
	rec   *recorder
	res   *Result
}

func (r *runner) roundTrips() int64 {
	if rt, ok := r.st.(roundTripper); ok {
		return rt.RoundTrips()
	}
	return 0
}

// submitMany creates n tasks with one InitializeTasks call (n = 0: one
// task with InitializeTask), recording their submission time, and returns
// the call's duration.
func (r *runner) submitMany(ctx context.Context, n int) (time.Duration, error) {
	req := func() *engine.TaskRequest {
		req := &engine.TaskRequest{Namespace: "bench", Name: "bench_" + string(r.cfg.Shape),
			Initiator: "tasker bench", Reason: "benchmark"}
		if n := int64(r.cfg.ConcurrencyKeys); n > 0 {
			req.Context = json.RawMessage(fmt.Sprintf(`{"k":%d}`, r.keyed.Add(1)%n))
		}
		if r.cfg.IdempotencyKeys {
			req.IdempotencyKey = fmt.Sprintf("bench-%d", r.idem.Add(1))
		}
		return req
	}
	t0 := time.Now()
	if n == 0 {
		task, _, err := r.eng.InitializeTask(ctx, req())
		if err != nil {
			return 0, fmt.Errorf("initialize task: %w", err)
		}
		r.rec.submitted(task.ID, t0)
		return time.Since(t0), nil
	}
	reqs := make([]*engine.TaskRequest, n)
	for i := range reqs {
		reqs[i] = req()
	}
	res, err := r.eng.InitializeTasks(ctx, reqs)
	if err != nil {
		return 0, fmt.Errorf("initialize %d tasks: %w", n, err)
	}
	for _, tr := range res {
		if tr.Err != nil {
			return 0, fmt.Errorf("initialize tasks: %w", tr.Err)
		}
		r.rec.submitted(tr.Task.ID, t0)
	}
	return time.Since(t0), nil
}

// startRunner starts the engine's runner; the returned function stops it
// and waits for it.
func (r *runner) startRunner(ctx context.Context) func() {
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.eng.Run(rctx, r.cfg.Workers); err != nil {
			r.cfg.Logger.Error("bench runner", "err", err)
		}
	}()
	return func() { cancel(); <-done }
}

func (r *runner) burnDown(ctx context.Context) error {
	n := r.cfg.Tasks
	rt0 := r.roundTrips()
	use := r.mark()
	t0 := time.Now()
	initLat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, r.cfg.Producers)
	stopProgress := r.progress(ctx, "creating", func() (int, int) { return min(int(next.Load()), n), n })
	for range r.cfg.Producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			step := max(r.cfg.CreateBatch, 1)
			for {
				i := int(next.Add(int64(step))) - step
				if i >= n || ctx.Err() != nil {
					return
				}
				k := min(step, n-i)
				if r.cfg.CreateBatch == 0 {
					k = 0
				}
				d, err := r.submitMany(ctx, k)
				if err != nil {
					errs <- err
					return
				}
				for j := i; j < i+max(k, 1); j++ {
					initLat[j] = d // the duration of the call that created task j
				}
			}
		}()
	}
	wg.Wait()
	stopProgress()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("creating tasks: %w", err)
	}
	initSecs := time.Since(t0).Seconds()
	r.res.Init = &InitStats{Tasks: n, Seconds: initSecs, TasksPerSecond: float64(n) / initSecs,
		RoundTripsPerTask: float64(r.roundTrips()-rt0) / float64(n), Latency: summarize(initLat)}
	r.res.Init.costs(use, r.mark())
	if r.cfg.CreateOnly {
		return nil
	}

	r.rec.expect(n)
	rt1 := r.roundTrips()
	use0 := r.mark()
	start := time.Now()
	stopRunner := r.startRunner(ctx)
	stopProgress = r.progress(ctx, "running", func() (int, int) { return r.rec.finishedCount(), n })
	var err error
	select {
	case <-r.rec.allDone:
	case <-ctx.Done():
		err = fmt.Errorf("burn-down of %d tasks did not finish (%d finished): %w", n, r.rec.finishedCount(), ctx.Err())
	}
	end := r.rec.lastFinish()
	rt2 := r.roundTrips()
	use1 := r.mark()
	stopProgress()
	stopRunner()
	if err != nil {
		return err
	}
	r.fill(start, end, rt2-rt1)
	r.fillUsage(use0, use1)
	return nil
}

func (r *runner) continuous(ctx context.Context) error {
	rt1 := r.roundTrips()
	use0 := r.mark()
	start := time.Now()
	stopRunner := r.startRunner(ctx)
	defer stopRunner()
	pctx, stopProducers := context.WithTimeout(ctx, r.cfg.Duration)
	defer stopProducers()
	stopProgress := r.progress(ctx, "running", func() (int, int) { return r.rec.finishedCount(), r.rec.submittedCount() })
	var wg sync.WaitGroup
	errs := make(chan error, r.cfg.Producers)
	var outstanding atomic.Int64
	slots := make(chan struct{}, r.cfg.Backlog)
	r.rec.setOnFinish(func() { outstanding.Add(-1); <-slots })
	for range r.cfg.Producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case slots <- struct{}{}:
				case <-pctx.Done():
					return
				}
				// With batches, take as many more free slots as a batch holds.
				k := 1
				for k < r.cfg.CreateBatch && len(slots) < cap(slots) {
					select {
					case slots <- struct{}{}:
						k++
						continue
					default:
					}
					break
				}
				outstanding.Add(int64(k))
				n := k
				if r.cfg.CreateBatch == 0 {
					n = 0
				}
				if _, err := r.submitMany(ctx, n); err != nil {
					if pctx.Err() == nil {
						errs <- err
					}
					for range k {
						<-slots
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		stopProgress()
		return err
	}
	// Let the tasks still outstanding finish; they count.
	r.rec.expect(r.rec.submittedCount())
	var err error
	select {
	case <-r.rec.allDone:
	case <-ctx.Done():
		err = fmt.Errorf("continuous run: %d tasks still running: %w", outstanding.Load(), ctx.Err())
	}
	end := r.rec.lastFinish()
	rt2 := r.roundTrips()
	use1 := r.mark()
	stopProgress()
	if err != nil {
		return err
	}
	r.fill(start, end, rt2-rt1)
	r.fillUsage(use0, use1)
	return nil
}

func (r *runner) fill(start, end time.Time, roundTrips int64) {
	secs := end.Sub(start).Seconds()
	if secs <= 0 {
		secs = 1e-9
	}
	r.res.Seconds = secs
	r.res.TasksCompleted, r.res.TasksFailed, r.res.StepsCompleted = r.rec.counts()
	r.res.TasksPerSecond = float64(r.res.TasksCompleted) / secs
	r.res.StepsPerSecond = float64(r.res.StepsCompleted) / secs
	r.res.RoundTrips = roundTrips
}

// progress prints a line every second until the returned function is called.
func (r *runner) progress(ctx context.Context, what string, counts func() (done, total int)) func() {
	if r.cfg.Progress == nil {
		return func() {}
	}
	stop := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t0 := time.Now()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		prevDone, prevSteps := 0, 0
		for {
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			done, total := counts()
			steps := r.rec.stepCount()
			fmt.Fprintf(r.cfg.Progress, "bench: %5.1fs %s %d/%d tasks (%d/s), %d steps (%d/s)\n",
				time.Since(t0).Seconds(), what, done, total, done-prevDone, steps, steps-prevSteps)
			prevDone, prevSteps = done, steps
		}
	}()
	return func() { close(stop); <-finished }
}

// openStore opens and migrates the store the config names. On PostgreSQL
// the run gets a private schema (dropped afterwards unless KeepSchema) and a
// pool large enough for its workers, and a probe of the server's usage
// (nil on SQLite).
func openStore(ctx context.Context, cfg *Config) (store.Store, *probe, func(), error) {
	u := cfg.DatabaseURL
	switch {
	case u == "" || strings.HasPrefix(u, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(u, "sqlite:"), "//")
		cleanup := func() {}
		if path == "" {
			dir, err := os.MkdirTemp("", "tasker-bench-")
			if err != nil {
				return nil, nil, nil, fmt.Errorf("temp dir for SQLite: %w", err)
			}
			path = filepath.Join(dir, "bench.db")
			cleanup = func() { _ = os.RemoveAll(dir) }
		}
		st, err := sqlite.Open(ctx, path)
		if err != nil {
			cleanup()
			return nil, nil, nil, err
		}
		if _, err := st.MigrateUp(ctx, 0); err != nil {
			_ = st.Close()
			cleanup()
			return nil, nil, nil, fmt.Errorf("migrate %s: %w", path, err)
		}
		return st, nil, func() { _ = st.Close(); cleanup() }, nil
	case strings.HasPrefix(u, "postgres://"), strings.HasPrefix(u, "postgresql://"):
		schema := "tasker_bench_" + randHex(6)
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("connect to %s: %w", postgres.RedactURL(u), err)
		}
		defer conn.Close(context.WithoutCancel(ctx))
		if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
			return nil, nil, nil, fmt.Errorf("create schema %s: %w", schema, err)
		}

		drop := func() {
			if cfg.KeepSchema {
				return
			}
			c, err := pgx.Connect(context.Background(), u)
			if err != nil {
				return
			}
			defer c.Close(context.Background())
			_, _ = c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		}
		pu, err := url.Parse(u)
		if err != nil {
			drop()
			return nil, nil, nil, fmt.Errorf("parse database URL %s: %w", redact.DSN(u), redact.Error(err, u))
		}
		q := pu.Query()
		q.Set("search_path", schema)
		if q.Get("pool_max_conns") == "" {
			q.Set("pool_max_conns", strconv.Itoa(cfg.Workers+cfg.Producers+4))
		}
		pu.RawQuery = q.Encode()
		st, err := postgres.Open(ctx, pu.String())
		if err != nil {
			drop()
			return nil, nil, nil, err
		}
		if _, err := st.MigrateUp(ctx, 0); err != nil {
			_ = st.Close()
			drop()
			return nil, nil, nil, fmt.Errorf("migrate schema %s: %w", schema, err)
		}
		if cfg.SchemaSQL != "" {
			if _, err := conn.Exec(ctx, "SET search_path = "+schema+"; "+cfg.SchemaSQL); err != nil {
				_ = st.Close()
				drop()
				return nil, nil, nil, fmt.Errorf("--schema-sql: %w", err)
			}
		}
		pr := newProbe(ctx, u)
		return st, pr, func() { pr.close(); _ = st.Close(); drop() }, nil
	}
	return nil, nil, nil, fmt.Errorf("database URL must start with postgres://, postgresql:// or sqlite: (got %q)", postgres.RedactURL(u))
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
