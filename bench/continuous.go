package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/riverqueue/river"
)

// Continuous mode (issue 18 item 2): producers create work while the
// workers work it, for a fixed duration, on both sides. Producers stop at
// the end of the duration; the jobs or tasks still outstanding are worked
// and count, and the rate is everything created divided by the time from
// the start to the last completion (the definition of `tasker bench --mode
// continuous`). Both sides keep at most backlog units outstanding: a
// producer waits for a free slot before it creates (a batch takes as many
// free slots as it holds, at least one), so batch creation cannot bury the
// workers and the latency stays bounded by backlog / rate.

// stampArgs is River's job for the continuous mode: a no-op that carries
// the time just before its insert, for the end-to-end latency.
type stampArgs struct {
	At int64 `json:"at"` // UnixNano, just before Insert / InsertMany
}

// Kind implements river.JobArgs.
func (stampArgs) Kind() string { return "bench_stamp" }

type stampWorker struct {
	river.WorkerDefaults[stampArgs]
}

// Work implements river.Worker.
func (stampWorker) Work(context.Context, *river.Job[stampArgs]) error { return nil }

// latency summarizes durations in milliseconds like `tasker bench`.
type latency struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func summarize(ds []time.Duration) latency {
	if len(ds) == 0 {
		return latency{}
	}
	slices.Sort(ds)
	q := func(p float64) float64 {
		return float64(ds[min(int(p*float64(len(ds))), len(ds)-1)]) / 1e6
	}
	return latency{N: len(ds), P50: q(0.50), P95: q(0.95), P99: q(0.99), Max: float64(ds[len(ds)-1]) / 1e6}
}

// riverContinuousResult is one continuous River run.
type riverContinuousResult struct {
	Label     string  `json:"label"`
	Workers   int     `json:"workers"`
	Producers int     `json:"producers"`
	Batch     int     `json:"batch"` // 0: Insert one job per call
	Backlog   int     `json:"backlog"`
	Jobs      int     `json:"jobs"`
	Seconds   float64 `json:"seconds"`
	// JobsPerSec is Jobs / Seconds: inserted and worked.
	JobsPerSec float64 `json:"jobs_per_second"`
	// Latency is from just before the insert call to the job_completed
	// event (River's completer has recorded the completion).
	Latency latency  `json:"latency_ms"`
	CPU     unitCost `json:"cpu"`
}

// riverContinuous runs a River client with workers workers while producers
// goroutines insert no-op jobs (batch 0: one Insert per job; otherwise
// InsertMany of up to batch jobs) for d.
func riverContinuous(ctx context.Context, dbURL string, workers, producers, batch, backlog int, d time.Duration) (*riverContinuousResult, error) {
	pool, client, err := openRiver(ctx, dbURL, min(max(workers/4, 8), 40)+producers, workers, func(ws *river.Workers) { river.AddWorker(ws, &stampWorker{}) })
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	events, cancelEvents := client.SubscribeConfig(&river.SubscribeConfig{Kinds: []river.EventKind{river.EventKindJobCompleted},
		ChanSize: 1 << 20})
	defer cancelEvents()

	slots := make(chan struct{}, backlog)
	var inserted, completed atomic.Int64
	lats := make([]time.Duration, 0, 1<<16)
	var last time.Time
	collected := make(chan struct{})
	stopCollect := make(chan struct{})
	go func() { // completions: latency, free a slot
		defer close(collected)
		for {
			select {
			case ev := <-events:
				now := time.Now()
				var a stampArgs
				if err := json.Unmarshal(ev.Job.EncodedArgs, &a); err == nil && a.At > 0 {
					lats = append(lats, now.Sub(time.Unix(0, a.At)))
				}
				last = now
				completed.Add(1)
				<-slots
			case <-stopCollect:
				return
			}
		}
	}()

	meter := newMeter(ctx, pool)
	cpu0 := meter.mark(ctx)
	start := time.Now()
	if err := client.Start(ctx); err != nil {
		return nil, fmt.Errorf("river start: %w", err)
	}
	pctx, stop := context.WithTimeout(ctx, d)
	defer stop()
	var wg sync.WaitGroup
	errs := make(chan error, producers)
	for range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			params := make([]river.InsertManyParams, 0, max(batch, 1))
			for {
				select {
				case slots <- struct{}{}:
				case <-pctx.Done():
					return
				}
				k := 1
				for k < batch {
					select {
					case slots <- struct{}{}:
						k++
						continue
					default:
					}
					break
				}
				at := time.Now().UnixNano()
				var err error
				if batch == 0 {
					_, err = client.Insert(ctx, stampArgs{At: at}, nil)
				} else {
					params = params[:0]
					for range k {
						params = append(params, river.InsertManyParams{Args: stampArgs{At: at}})
					}
					_, err = client.InsertMany(ctx, params)
				}
				if err != nil {
					errs <- fmt.Errorf("river insert: %w", err)
					return
				}
				inserted.Add(int64(k))
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		_ = client.Stop(ctx)
		return nil, err
	}
	want := inserted.Load()
	deadline := time.Now().Add(2 * time.Minute)
	for completed.Load() < want {
		if time.Now().After(deadline) {
			_ = client.Stop(ctx)
			return nil, fmt.Errorf("river continuous: %d of %d jobs completed", completed.Load(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(stopCollect)
	<-collected
	cpu1 := meter.mark(ctx)
	if err := client.Stop(ctx); err != nil {
		return nil, fmt.Errorf("river stop: %w", err)
	}
	secs := last.Sub(start).Seconds()
	label := "River Insert"
	if batch > 0 {
		label = fmt.Sprintf("River InsertMany (batches of %d)", batch)
	}
	return &riverContinuousResult{Label: label, Workers: workers, Producers: producers, Batch: batch, Backlog: backlog,
		Jobs: int(want), Seconds: secs, JobsPerSec: float64(want) / secs, Latency: summarize(lats),
		CPU: per(cpu0, cpu1, int(want))}, nil
}

// continuousRuns runs, c.reps times, River and tasker creating while
// working: single creates from c.producers goroutines and batches of 100,
// then tasker burn-downs of as many single-step tasks created the same two
// ways, for the CPU a task costs when creation and work do not overlap.
func continuousRuns(ctx context.Context, c *config, riverURL string, rep *report) error {
	d := c.contDuration
	logf("continuous: %s each, %d producers, backlog %d (River %d workers, tasker %d)", d, c.producers, c.backlog,
		c.riverWorkers, c.workers)
	tasker := func(label string, extra ...string) (*taskerResult, error) {
		args := append([]string{"--mode", "continuous", "--shape", "single", "--workers", strconv.Itoa(c.workers),
			"--producers", strconv.Itoa(c.producers), "--backlog", strconv.Itoa(c.backlog), "--duration", d.String()}, extra...)
		return taskerBench(ctx, c.bin, c.db, label, args...)
	}
	for i := range c.reps {
		rs, err := riverContinuous(ctx, riverURL, c.riverWorkers, c.producers, 0, c.backlog, d)
		if err != nil {
			return err
		}
		ts, err := tasker("tasker InitializeTask")
		if err != nil {
			return err
		}
		rb, err := riverContinuous(ctx, riverURL, c.riverWorkers, c.producers, 100, c.backlog, d)
		if err != nil {
			return err
		}
		tb, err := tasker("tasker InitializeTasks (batches of 100)", "--create-batch", "100")
		if err != nil {
			return err
		}
		// Burn-downs of as many tasks, created the same way, for the CPU a
		// task costs when creation and work do not overlap.
		bs, err := taskerBench(ctx, c.bin, c.db, "tasker burn-down, InitializeTask", "--shape", "single",
			"--tasks", strconv.Itoa(max(ts.TasksCompleted, 1000)), "--workers", strconv.Itoa(c.workers),
			"--producers", strconv.Itoa(c.producers))
		if err != nil {
			return err
		}
		bb, err := taskerBench(ctx, c.bin, c.db, "tasker burn-down, InitializeTasks of 100", "--shape", "single",
			"--tasks", strconv.Itoa(max(tb.TasksCompleted, 1000)), "--workers", strconv.Itoa(c.workers),
			"--producers", strconv.Itoa(c.producers), "--create-batch", "100")
		if err != nil {
			return err
		}
		rep.RiverContSingle = append(rep.RiverContSingle, rs)
		rep.ContSingle = append(rep.ContSingle, ts)
		rep.RiverContBatch = append(rep.RiverContBatch, rb)
		rep.ContBatch = append(rep.ContBatch, tb)
		rep.ContBurnDownSingle = append(rep.ContBurnDownSingle, bs)
		rep.ContBurnDownBatch = append(rep.ContBurnDownBatch, bb)
		logf("  %d: singles River %.0f, tasker %.0f /s; batches River %.0f, tasker %.0f /s; burn-downs %.0f, %.0f tasks/s",
			i+1, rs.JobsPerSec, ts.TasksPerSecond, rb.JobsPerSec, tb.TasksPerSecond, bs.TasksPerSecond, bb.TasksPerSecond)
	}
	rate := func(t *taskerResult) float64 { return t.TasksPerSecond }
	rrate := func(r *riverContinuousResult) float64 { return r.JobsPerSec }
	rep.Ratios["continuous_single_tasks_per_river_insert_jobs"] = median(rep.ContSingle, rate) / median(rep.RiverContSingle, rrate)
	rep.Ratios["continuous_batch_tasks_per_river_insertmany_jobs"] = median(rep.ContBatch, rate) / median(rep.RiverContBatch, rrate)
	total := func(t *taskerResult) float64 { u := t.cpu(); return u.ClientUS + u.ServerUS }
	rep.Ratios["continuous_single_cpu_per_burndown_run_cpu"] = median(rep.ContSingle, total) / median(rep.ContBurnDownSingle, total)
	rep.Ratios["continuous_batch_cpu_per_burndown_run_cpu"] = median(rep.ContBatch, total) / median(rep.ContBurnDownBatch, total)
	rep.Ratios["continuous_single_cpu_per_burndown_cpu"] = median(rep.ContSingle, total) / median(rep.ContBurnDownSingle, withInit)
	rep.Ratios["continuous_batch_cpu_per_burndown_cpu"] = median(rep.ContBatch, total) / median(rep.ContBurnDownBatch, withInit)
	return nil
}

// withInit is what a burn-down's task cost in all: its creation (tasker
// and PostgreSQL CPU per created task) and its run (per completed task).
func withInit(t *taskerResult) float64 {
	u := t.cpu()
	c := u.ClientUS + u.ServerUS
	if t.Init != nil {
		c += t.Init.TaskerUSPerTask
		if t.Init.DatabaseUSPerTask != nil {
			c += *t.Init.DatabaseUSPerTask
		}
	}
	return c
}

// continuousMarkdown renders the continuous comparison (issue 18 item 2).
func continuousMarkdown(r *report) string {
	if len(r.RiverContSingle) == 0 {
		return ""
	}
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	rs, rb := r.RiverContSingle[0], r.RiverContBatch[0]
	p("Creating while working (median of %d; %d producers, backlog %d, %.0f s of creation; River %d workers, tasker %d):\n\n",
		len(r.RiverContSingle), rs.Producers, rs.Backlog, r.ContSingle[0].Seconds, rs.Workers, r.ContSingle[0].Workers)
	rrate := func(x *riverContinuousResult) float64 { return x.JobsPerSec }
	rate := func(t *taskerResult) float64 { return t.TasksPerSecond }
	p("| measure | value | target |\n|---|---|---|\n")
	p("| River, Insert from %d goroutines (jobs/s) | %.0f | |\n", rs.Producers, median(r.RiverContSingle, rrate))
	p("| tasker, InitializeTask from %d goroutines (tasks/s) | %.0f | |\n", rs.Producers, median(r.ContSingle, rate))
	p("| **ratio singles** | **%.2f** | **>= 1.0** |\n", r.Ratios["continuous_single_tasks_per_river_insert_jobs"])
	p("| River, InsertMany of %d (jobs/s) | %.0f | |\n", rb.Batch, median(r.RiverContBatch, rrate))
	p("| tasker, InitializeTasks of 100 (tasks/s) | %.0f | |\n", median(r.ContBatch, rate))
	p("| **ratio batches** | **%.2f** | **>= 0.8** |\n", r.Ratios["continuous_batch_tasks_per_river_insertmany_jobs"])
	p("| CPU per task, singles / burn-down created the same way (its run alone) | %.2f (%.2f) | <= 1.5 |\n",
		r.Ratios["continuous_single_cpu_per_burndown_cpu"], r.Ratios["continuous_single_cpu_per_burndown_run_cpu"])
	p("| CPU per task, batches / burn-down created the same way (its run alone) | %.2f (%.2f) | <= 1.5 |\n\n",
		r.Ratios["continuous_batch_cpu_per_burndown_cpu"], r.Ratios["continuous_batch_cpu_per_burndown_run_cpu"])
	p("Per run (a burn-down's rate is its run phase's, after all its tasks were created, its e2e counts from creation, before the runner started, and its CPU is creation + run):\n\n")
	p("| run | units/s | e2e p50 / p99 ms | client µs/unit | PostgreSQL µs/unit | WAL bytes/unit |\n|---|---|---|---|---|---|\n")
	for i := range r.RiverContSingle {
		for _, x := range []*riverContinuousResult{r.RiverContSingle[i], r.RiverContBatch[i]} {
			p("| %s | %.0f | %.1f / %.1f | %.0f | %.0f | %.0f |\n", x.Label, x.JobsPerSec, x.Latency.P50, x.Latency.P99,
				x.CPU.ClientUS, x.CPU.ServerUS, x.CPU.WALBytes)
		}
		for _, t := range []*taskerResult{r.ContSingle[i], r.ContBatch[i], r.ContBurnDownSingle[i], r.ContBurnDownBatch[i]} {
			u := t.cpu()
			if t.Init != nil {
				u.ClientUS += t.Init.TaskerUSPerTask
				if t.Init.DatabaseUSPerTask != nil {
					u.ServerUS += *t.Init.DatabaseUSPerTask
				}
				if t.Init.WALBytesPerTask != nil {
					u.WALBytes += *t.Init.WALBytesPerTask
				}
			}
			p("| %s | %.0f | %.1f / %.1f | %.0f | %.0f | %.0f |\n", t.Label, t.TasksPerSecond, t.TaskLatency.P50,
				t.TaskLatency.P99, u.ClientUS, u.ServerUS, u.WALBytes)
		}
	}
	return b.String()
}
