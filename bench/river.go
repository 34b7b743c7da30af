package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

// noopArgs is River's job: nothing to do, like tasker's no-op step.
type noopArgs struct{}

// Kind implements river.JobArgs.
func (noopArgs) Kind() string { return "bench_noop" }

type noopWorker struct {
	river.WorkerDefaults[noopArgs]
}

// Work implements river.Worker.
func (noopWorker) Work(context.Context, *river.Job[noopArgs]) error { return nil }

// withDatabase returns the URL with its database name replaced.
func withDatabase(raw, db string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("parse database URL: %w", err)
	}
	u.Path = "/" + db
	return u.String(), nil
}

// recreateDatabase drops and creates a database on the cluster of serverURL.
func recreateDatabase(ctx context.Context, serverURL, db string) (string, error) {
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return "", fmt.Errorf("connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)"); err != nil {
		return "", fmt.Errorf("drop database %s: %w", db, err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+db); err != nil {
		return "", fmt.Errorf("create database %s: %w", db, err)
	}
	return withDatabase(serverURL, db)
}

// riverResult is one River burn-down.
type riverResult struct {
	Workers int `json:"workers"`
	Jobs    int `json:"jobs"`
	// InsertJobsPerSec is the rate of the InsertManyFast calls (batches
	// of 1,000) that inserted the jobs.
	InsertJobsPerSec float64 `json:"insert_jobs_per_second"`
	Seconds          float64 `json:"seconds"`
	JobsPerSec       float64 `json:"jobs_per_second"`
	// CPU is per job, from the client's start to the last completion.
	CPU unitCost `json:"cpu"`
}

// riverBench inserts jobs no-op jobs (timed: InsertJobsPerSec), then times
// a River client with workers workers (fetch cooldown 1 ms, poll interval
// 20 ms: River's own benchmark settings) until every job is completed.
// With insertOnly it stops after the insert.
func riverBench(ctx context.Context, dbURL string, jobs, workers int, insertOnly bool) (*riverResult, error) {
	pool, client, err := openRiver(ctx, dbURL, min(max(workers/4, 8), 40), workers, func(ws *river.Workers) { river.AddWorker(ws, &noopWorker{}) })
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	batch := make([]river.InsertManyParams, 0, 1000)
	insertStart := time.Now()
	for i := 0; i < jobs; i += len(batch) {
		batch = batch[:0]
		for j := i; j < min(i+1000, jobs); j++ {
			batch = append(batch, river.InsertManyParams{Args: noopArgs{}})
		}
		if _, err := client.InsertManyFast(ctx, batch); err != nil {
			return nil, fmt.Errorf("river insert: %w", err)
		}
	}
	insertRate := float64(jobs) / time.Since(insertStart).Seconds()
	if insertOnly {
		return &riverResult{Workers: workers, Jobs: jobs, InsertJobsPerSec: insertRate}, nil
	}
	events, cancel := client.SubscribeConfig(&river.SubscribeConfig{Kinds: []river.EventKind{river.EventKindJobCompleted}, ChanSize: jobs + 1})
	defer cancel()
	meter := newMeter(ctx, pool)
	cpu0 := meter.mark(ctx)
	start := time.Now()
	if err := client.Start(ctx); err != nil {
		return nil, fmt.Errorf("river start: %w", err)
	}
	var last time.Time
	for n := 0; n < jobs; n++ {
		select {
		case <-events:
			last = time.Now()
		case <-time.After(2 * time.Minute):
			_ = client.Stop(ctx)
			return nil, fmt.Errorf("river: only %d of %d jobs completed", n, jobs)
		}
	}
	cpu1 := meter.mark(ctx)
	if err := client.Stop(ctx); err != nil {
		return nil, fmt.Errorf("river stop: %w", err)
	}
	var completed int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM river_job WHERE state = 'completed'").Scan(&completed); err != nil {
		return nil, fmt.Errorf("river count: %w", err)
	}
	if completed != jobs {
		return nil, fmt.Errorf("river: %d of %d jobs completed in the table", completed, jobs)
	}
	secs := last.Sub(start).Seconds()
	return &riverResult{Workers: workers, Jobs: jobs, Seconds: secs, JobsPerSec: float64(jobs) / secs,
		InsertJobsPerSec: insertRate, CPU: per(cpu0, cpu1, jobs)}, nil
}

// openRiver opens a pool of maxConns connections, migrates River's schema
// up, empties river_job and returns a River client with workers workers on
// the default queue (fetch cooldown 1 ms, poll interval 20 ms: River's own
// benchmark settings) and the workers add registers. The caller closes the
// pool.
func openRiver(ctx context.Context, dbURL string, maxConns, workers int,
	add func(*river.Workers)) (*pgxpool.Pool, *river.Client[pgx.Tx], error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, nil, fmt.Errorf("river pool: %w", err)
	}
	cfg.MaxConns = int32(maxConns)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("river pool: %w", err)
	}
	fail := func(err error) (*pgxpool.Pool, *river.Client[pgx.Tx], error) {
		pool.Close()
		return nil, nil, err
	}
	driver := riverpgxv5.New(pool)
	migrator, err := rivermigrate.New(driver, nil)
	if err != nil {
		return fail(fmt.Errorf("river migrator: %w", err))
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fail(fmt.Errorf("river migrate: %w", err))
	}
	if _, err := pool.Exec(ctx, "TRUNCATE river_job"); err != nil {
		return fail(fmt.Errorf("truncate river_job: %w", err))
	}
	ws := river.NewWorkers()
	add(ws)
	client, err := river.NewClient(driver, &river.Config{
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: workers}},
		Workers:           ws,
		FetchCooldown:     time.Millisecond,
		FetchPollInterval: 20 * time.Millisecond,
		Logger:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return fail(fmt.Errorf("river client: %w", err))
	}
	return pool, client, nil
}
