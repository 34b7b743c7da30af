package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/jackc/pgx/v5"
)

// pgbenchResult is one pgbench run.
type pgbenchResult struct {
	Clients int     `json:"clients"`
	Seconds int     `json:"seconds"`
	TPS     float64 `json:"tps"`
	// CPU is per transaction; the client is the pgbench process.
	CPU unitCost `json:"cpu"`
}

var (
	tpsRe = regexp.MustCompile(`tps = ([0-9.]+)`)
	txRe  = regexp.MustCompile(`number of transactions actually processed: ([0-9]+)`)
)

// pgbenchUpdate runs a single-row UPDATE by primary key (rows keys chosen at
// random) with clients connections for seconds, each statement its own
// durable transaction, and returns pgbench's tps.
func pgbenchUpdate(ctx context.Context, pgbench, dbURL string, rows, clients, seconds int) (*pgbenchResult, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return nil, fmt.Errorf("pgbench setup: %w", err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		"DROP TABLE IF EXISTS bench_kv",
		"CREATE TABLE bench_kv (id integer PRIMARY KEY, v bigint NOT NULL)",
		fmt.Sprintf("INSERT INTO bench_kv SELECT i, 0 FROM generate_series(1, %d) i", rows),
		"VACUUM ANALYZE bench_kv",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return nil, fmt.Errorf("pgbench setup %q: %w", q, err)
		}
	}
	dir, err := os.MkdirTemp("", "pgbench-")
	if err != nil {
		return nil, fmt.Errorf("pgbench script: %w", err)
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "update.sql")
	body := fmt.Sprintf("\\set id random(1, %d)\nUPDATE bench_kv SET v = v + 1 WHERE id = :id;\n", rows)
	if err := os.WriteFile(script, []byte(body), 0o644); err != nil {
		return nil, fmt.Errorf("pgbench script: %w", err)
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		return nil, fmt.Errorf("parse database URL: %w", err)
	}
	args := []string{"-n", "-M", "prepared", "-c", strconv.Itoa(clients), "-j", "2", "-T", strconv.Itoa(seconds), "-f", script,
		"-h", u.Hostname(), "-p", u.Port(), "-U", u.User.Username(), u.Path[1:]}
	meter := newMeter(ctx, conn)
	cpu0 := meter.mark(ctx)
	cmd := exec.CommandContext(ctx, pgbench, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("pgbench: %w\n%s", err, out)
	}
	cpu1 := meter.mark(ctx)
	cpu1.client = cpu0.client + cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	m := tpsRe.FindSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("pgbench: no tps in output:\n%s", out)
	}
	tps, _ := strconv.ParseFloat(string(m[1]), 64)
	m = txRe.FindSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("pgbench: no transaction count in output:\n%s", out)
	}
	txs, _ := strconv.Atoi(string(m[1]))
	return &pgbenchResult{Clients: clients, Seconds: seconds, TPS: tps, CPU: per(cpu0, cpu1, txs)}, nil
}
