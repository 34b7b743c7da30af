package main

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
)

func markdown(r *report, riverJobs, singleTasks, pgbTPS, fanSteps float64) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("Run of %s on %s; PostgreSQL %s, fsync=%s, synchronous_commit=%s, full_page_writes=%s.\n\n",
		r.Started.Format("2006-01-02 15:04 UTC"), r.Machine, r.Settings["server_version"], r.Settings["fsync"],
		r.Settings["synchronous_commit"], r.Settings["full_page_writes"])
	p("| measure (median of %d) | value |\n|---|---|\n", len(r.River))
	p("| River no-op jobs/s (%d workers) | %.0f |\n", r.River[0].Workers, riverJobs)
	p("| tasker single-step tasks/s (%d workers) | %.0f |\n", r.Single[0].Workers, singleTasks)
	p("| **ratio tasker tasks/s / River jobs/s** | **%.2f** |\n", r.Ratios["single_tasks_per_river_jobs"])
	p("| pgbench single-row UPDATE tps (16 clients) | %.0f |\n", pgbTPS)
	p("| tasker fan-out 1,000 steps/s | %.0f |\n", fanSteps)
	p("| **ratio fan-out 1,000 steps/s / pgbench tps** | **%.2f** |\n", r.Ratios["fanout1000_steps_per_pgbench_tps"])
	p("| tasker fan-out 10,000 steps/s | %.0f |\n", median(r.Fanout10k, func(t *taskerResult) float64 { return t.StepsPerSecond }))
	p("| **ratio fan-out 10,000 steps/s / pgbench tps** | **%.2f** |\n", r.Ratios["fanout10000_steps_per_pgbench_tps"])
	if len(r.RiverSweep) > 0 && len(r.Sweep) > 0 {
		rb, tb := r.RiverSweep[0], r.Sweep[0]
		for _, x := range r.RiverSweep {
			if x.JobsPerSec > rb.JobsPerSec {
				rb = x
			}
		}
		for _, x := range r.Sweep {
			if x.TasksPerSecond > tb.TasksPerSecond {
				tb = x
			}
		}
		p("| workers sweep, best of each: River jobs/s / tasker tasks/s | %.0f (%d workers) / %.0f (%d workers) = %.2f |\n",
			rb.JobsPerSec, rb.Workers, tb.TasksPerSecond, tb.Workers, tb.TasksPerSecond/rb.JobsPerSec)
	}
	p("| idle `tasker serve` transactions/s | %.2f |\n\n", r.IdleQueries)

	p("What one unit of work cost in the timed phase (medians): CPU time of the client (the River harness, the tasker\n")
	p("process or pgbench) and of the whole PostgreSQL cluster, and the write-ahead log written. The ceiling is what\n")
	p("%d cores could do if that CPU were the only cost.\n\n", runtime.NumCPU())
	p("| work | units/s | client µs/unit | PostgreSQL µs/unit | total µs/unit | ceiling units/s | WAL bytes/unit |\n|---|---|---|---|---|---|---|\n")
	cpuRow := func(name string, rate float64, cs []unitCost) {
		c := unitCost{ClientUS: median(cs, func(c unitCost) float64 { return c.ClientUS }),
			ServerUS: median(cs, func(c unitCost) float64 { return c.ServerUS }),
			WALBytes: median(cs, func(c unitCost) float64 { return c.WALBytes })}
		total := c.ClientUS + c.ServerUS
		if total <= 0 {
			return
		}
		p("| %s | %.0f | %.1f | %.1f | %.1f | %.0f | %.0f |\n", name, rate, c.ClientUS, c.ServerUS, total,
			float64(runtime.NumCPU())*1e6/total, c.WALBytes)
	}
	cpus := func(ts []*taskerResult) []unitCost {
		out := make([]unitCost, len(ts))
		for i, t := range ts {
			out[i] = t.cpu()
		}
		return out
	}
	riverCPU := make([]unitCost, len(r.River))
	for i, x := range r.River {
		riverCPU[i] = x.CPU
	}
	pgbCPU := make([]unitCost, len(r.Pgbench))
	for i, x := range r.Pgbench {
		pgbCPU[i] = x.CPU
	}
	cpuRow("River no-op job", riverJobs, riverCPU)
	cpuRow("tasker single-step task", singleTasks, cpus(r.Single))
	cpuRow("pgbench single-row UPDATE", pgbTPS, pgbCPU)
	cpuRow("tasker fan-out 1,000 step", fanSteps, cpus(r.Fanout1k))
	cpuRow("tasker fan-out 10,000 step", median(r.Fanout10k, func(t *taskerResult) float64 { return t.StepsPerSecond }), cpus(r.Fanout10k))
	p("\n")

	p("Every tasker run (`tasker bench`; latencies in ms):\n\n")
	p("| run | mode | workers | mps | tasks/s | steps/s | handoff p50 / p95 / p99 | task e2e p50 / p95 / p99 | round trips/step | CPU µs/step tasker / PG | init tasks/s | peak RSS MiB |\n")
	p("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	var all []*taskerResult
	for _, group := range [][]*taskerResult{r.Single, r.Fanout1k, r.Fanout10k, r.Latency, r.Shapes, r.Sweep} {
		all = append(all, group...)
	}
	for _, t := range all {
		init := "-"
		if t.Init != nil {
			init = fmt.Sprintf("%.0f", t.Init.TasksPerSecond)
		}
		c := t.cpu()
		p("| %s (%d steps) | %s | %d | %d | %.0f | %.0f | %s | %s | %.1f | %.0f / %.0f | %s | %.0f |\n", t.Label, t.StepsPerTask, t.Mode,
			t.Workers, t.MaxParallelSteps, t.TasksPerSecond, t.StepsPerSecond, lat(t.Handoff), lat(t.TaskLatency),
			t.RoundTripsPerStep, c.ClientUS, c.ServerUS, init, t.PeakRSSMB)
	}
	p("\nRiver runs:\n\n| workers | jobs | seconds | jobs/s | CPU µs/job harness / PG |\n|---|---|---|---|---|\n")
	for _, rr := range append(append([]*riverResult{}, r.River...), r.RiverSweep...) {
		p("| %d | %d | %.2f | %.0f | %.0f / %.0f |\n", rr.Workers, rr.Jobs, rr.Seconds, rr.JobsPerSec, rr.CPU.ClientUS, rr.CPU.ServerUS)
	}
	p("\npgbench runs (single-row UPDATE by key, 16 clients):\n\n| seconds | tps | CPU µs/transaction pgbench / PG |\n|---|---|---|\n")
	for _, pr := range r.Pgbench {
		p("| %d | %.0f | %.1f / %.1f |\n", pr.Seconds, pr.TPS, pr.CPU.ClientUS, pr.CPU.ServerUS)
	}
	return b.String()
}

func lat(l taskerLatency) string {
	if l.N == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f / %.1f / %.1f", l.P50, l.P95, l.P99)
}

func plots(r *report, dir string) error {
	tp := &chart{Title: "Throughput against workers (no-op, durable PostgreSQL)", XLabel: "workers (tasker: tasks at once; River: MaxWorkers)",
		YLabel: "per second", LogX: true}
	var ts, rs series
	ts.Name, rs.Name = "tasker tasks/s", "River jobs/s"
	for _, t := range r.Sweep {
		ts.X, ts.Y = append(ts.X, float64(t.Workers)), append(ts.Y, t.TasksPerSecond)
	}
	for _, rr := range r.RiverSweep {
		rs.X, rs.Y = append(rs.X, float64(rr.Workers)), append(rs.Y, rr.JobsPerSec)
	}
	tp.Series = []series{ts, rs}
	if err := tp.write(filepath.Join(dir, "throughput_vs_workers.svg")); err != nil {
		return err
	}
	lc := &chart{Title: "Latency distributions (hot runner, one task at a time)", XLabel: "percentile", YLabel: "milliseconds"}
	add := func(name string, l taskerLatency) {
		if len(l.Quantiles) < 100 {
			return
		}
		s := series{Name: name}
		for i := 0; i < 100; i++ { // up to p99: the maximum would flatten the rest
			s.X, s.Y = append(s.X, float64(i)), append(s.Y, l.Quantiles[i])
		}
		lc.Series = append(lc.Series, s)
	}
	for _, t := range r.Latency {
		add(t.Shape+" task e2e", t.TaskLatency)
		if t.Handoff.N > 0 {
			add(t.Shape+" handoff", t.Handoff)
		}
	}
	if err := lc.write(filepath.Join(dir, "latency.svg")); err != nil {
		return err
	}
	fc := &chart{Title: "Fan-out 10,000: step handoff latency (includes waiting for a slot)", XLabel: "percentile", YLabel: "milliseconds"}
	for _, t := range append(append([]*taskerResult{}, r.Fanout1k[:1]...), r.Fanout10k[:1]...) {
		if len(t.Handoff.Quantiles) >= 100 {
			s := series{Name: t.Label}
			for i := 0; i <= 100; i++ {
				s.X, s.Y = append(s.X, float64(i)), append(s.Y, t.Handoff.Quantiles[i])
			}
			fc.Series = append(fc.Series, s)
		}
	}
	return fc.write(filepath.Join(dir, "fanout_handoff.svg"))
}

// creationMarkdown renders the creation comparison (issue 18 item 1).
func creationMarkdown(r *report) string {
	if len(r.RiverInsert) == 0 {
		return ""
	}
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	river := median(r.RiverInsert, func(x *riverResult) float64 { return x.InsertJobsPerSec })
	batch := median(r.CreateBatch, func(t *taskerResult) float64 { return t.Init.TasksPerSecond })
	single := median(r.CreateSingle16, func(t *taskerResult) float64 { return t.Init.TasksPerSecond })
	p("Creation alone (median of %d; %d River jobs, tasker single-step tasks as given):\n\n", len(r.RiverInsert), r.RiverInsert[0].Jobs)
	p("| measure | per second | target |\n|---|---|---|\n")
	p("| River InsertManyFast, batches of 1,000 (jobs) | %.0f | |\n", river)
	p("| tasker InitializeTasks, batches of 1,000 (tasks) | %.0f | >= 0.5x River |\n", batch)
	p("| **ratio batch tasks/s / River InsertMany jobs/s** | **%.2f** | **>= 0.5** |\n", batch/river)
	p("| tasker InitializeTask from 16 goroutines (tasks) | %.0f | >= 5,000 |\n\n", single)
	p("| run | tasks/s | call latency p50 / p99 ms | round trips/task | CPU µs/task tasker / PG | WAL bytes/task |\n|---|---|---|---|---|---|\n")
	for _, t := range append(append([]*taskerResult{}, r.CreateBatch...), r.CreateSingle16...) {
		pg, wal := "-", "-"
		if t.Init.DatabaseUSPerTask != nil {
			pg = fmt.Sprintf("%.0f", *t.Init.DatabaseUSPerTask)
		}
		if t.Init.WALBytesPerTask != nil {
			wal = fmt.Sprintf("%.0f", *t.Init.WALBytesPerTask)
		}
		p("| %s | %.0f | %.1f / %.1f | %.3f | %.0f / %s | %s |\n", t.Label, t.Init.TasksPerSecond, t.Init.Latency.P50,
			t.Init.Latency.P99, t.Init.RoundTripsPerTask, t.Init.TaskerUSPerTask, pg, wal)
	}
	return b.String()
}
