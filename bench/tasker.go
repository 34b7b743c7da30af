package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
)

// taskerLatency mirrors the latency summary of `tasker bench --json`.
type taskerLatency struct {
	N         int       `json:"n"`
	P50       float64   `json:"p50"`
	P95       float64   `json:"p95"`
	P99       float64   `json:"p99"`
	Max       float64   `json:"max"`
	Quantiles []float64 `json:"quantiles"`
}

// taskerResult mirrors the result of `tasker bench --json` (the fields used here).
type taskerResult struct {
	Mode             string  `json:"mode"`
	Shape            string  `json:"shape"`
	StepsPerTask     int     `json:"steps_per_task"`
	Workers          int     `json:"workers"`
	MaxParallelSteps int     `json:"max_parallel_steps"`
	Backlog          int     `json:"backlog"`
	Seconds          float64 `json:"seconds"`
	TasksCompleted   int     `json:"tasks_completed"`
	StepsCompleted   int     `json:"steps_completed"`
	TasksPerSecond   float64 `json:"tasks_per_second"`
	StepsPerSecond   float64 `json:"steps_per_second"`
	Init             *struct {
		TasksPerSecond    float64       `json:"tasks_per_second"`
		RoundTripsPerTask float64       `json:"round_trips_per_task"`
		Latency           taskerLatency `json:"latency_ms"`
		TaskerUSPerTask   float64       `json:"tasker_us_per_task"`
		DatabaseUSPerTask *float64      `json:"database_us_per_task"`
		WALBytesPerTask   *float64      `json:"wal_bytes_per_task"`
	} `json:"init"`
	Handoff           taskerLatency `json:"handoff_ms"`
	TaskLatency       taskerLatency `json:"task_latency_ms"`
	RoundTripsPerStep float64       `json:"round_trips_per_step"`
	PeakRSSMB         float64       `json:"peak_rss_mb"`
	CPU               *struct {
		TaskerUSPerStep   float64  `json:"tasker_us_per_step"`
		DatabaseUSPerStep *float64 `json:"database_us_per_step"`
	} `json:"cpu"`
	WAL *struct {
		BytesPerStep float64 `json:"bytes_per_step"`
	} `json:"wal"`
	// Label names the run in tables.
	Label string `json:"label"`
}

// taskerBench runs `tasker bench --json` with args against dbURL.
func taskerBench(ctx context.Context, bin, dbURL, label string, args ...string) (*taskerResult, error) {
	all := append([]string{"bench", "--json", "--quiet", "--database-url", dbURL}, args...)
	cmd := exec.CommandContext(ctx, bin, all...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("tasker %v: %w", all[1:], err)
	}
	var r taskerResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return nil, fmt.Errorf("tasker bench output: %w", err)
	}
	r.Label = label
	return &r, nil
}

// cpu is the run's CPU and WAL per step (zero when not measured).
func (t *taskerResult) cpu() unitCost {
	if t.CPU == nil {
		return unitCost{}
	}
	c := unitCost{ClientUS: t.CPU.TaskerUSPerStep}
	if t.CPU.DatabaseUSPerStep != nil {
		c.ServerUS = *t.CPU.DatabaseUSPerStep
	}
	if t.WAL != nil {
		c.WALBytes = t.WAL.BytesPerStep
	}
	return c
}
