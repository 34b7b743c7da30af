package ui

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// benchTasks is how many finished tasks the dashboard benchmark loads.
const benchTasks = 100_000

// queryBudget is what the issue allows each dashboard query.
const queryBudget = 100 * time.Millisecond

// loadFinished writes n finished tasks by SQL (the engine would take
// minutes): created over the last 2 hours, finished a second later, 5 %
// in error (1 in 10 of those lost to an expired lease), 2 % cancelled, the
// rest complete; one step each with its claim and outcome transitions; every
// 100th tagged "batch"; idempotency keys key-N. Plus 1,000 pending tasks
// with enqueue records, 500 of them due.
func loadFinished(tb testing.TB, dialect, dsn string, n int) {
	tb.Helper()
	driver := "pgx"
	if dialect == "sqlite" {
		driver = "sqlite"
		dsn = "file:" + dsn + "?_pragma=busy_timeout(10000)"
	}
	db, err := sql.Open(driver, dsn)
	require.NoError(tb, err)
	defer db.Close()
	db.SetMaxOpenConns(1)
	ctx := context.Background()

	var seq, at, plus, now string
	if dialect == "sqlite" {
		seq = `WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < $1) `
		// The store's fixed-width UTC text: strftime's %f has milliseconds.
		at = `strftime('%Y-%m-%dT%H:%M:%f', 'now', printf('-%.3f seconds', ($1 - i) * 0.072)) || '000Z'`
		plus = `strftime('%Y-%m-%dT%H:%M:%f', substr(X, 1, 23), '+1 seconds') || '000Z'`
		now = `strftime('%Y-%m-%dT%H:%M:%f', 'now') || '000Z'`
	} else {
		seq = `WITH seq(i) AS (SELECT generate_series(1, $1)) `
		at = `now() - ($1 - i) * interval '72 milliseconds'`
		plus = `X + interval '1 second'`
		now = `now()`
	}
	stmts := []string{
		`INSERT INTO tasker_namespaces (name, created_at) VALUES ('bench', ` + now + `)`,
		`INSERT INTO tasker_named_tasks (namespace_id, name, version, created_at)
			SELECT namespace_id, 'load', '1.0.0', ` + now + ` FROM tasker_namespaces WHERE name = 'bench'`,
		`INSERT INTO tasker_named_steps (named_task_id, name, handler_class)
			SELECT named_task_id, 'work', 'tasker:noop' FROM tasker_named_tasks WHERE name = 'load'`,
		seq + `INSERT INTO tasker_tasks (named_task_id, namespace, name, version, state, transition_seq, context, tags,
			idempotency_key, max_parallel_steps, created_at, updated_at, completed_at)
			SELECT (SELECT named_task_id FROM tasker_named_tasks WHERE name = 'load'), 'bench',
			CASE i % 3 WHEN 0 THEN 'load' WHEN 1 THEN 'sync' ELSE 'report' END, '1.0.0',
			CASE WHEN i % 20 = 0 THEN 'error' WHEN i % 50 = 1 THEN 'cancelled' ELSE 'complete' END, 4,
			'{"order_id": 1, "note": "a context of a realistic size, with a few fields"}',
			(CASE WHEN i % 100 = 0 THEN '["batch"]' ELSE '["web"]' END)J, 'key-' || i, 10, ` + at + `, ` + at + `, ` + at + `
			FROM seq`,
		`UPDATE tasker_tasks SET completed_at = ` + strings.ReplaceAll(plus, "X", "created_at") + `, updated_at = ` +
			strings.ReplaceAll(plus, "X", "created_at"),
		`INSERT INTO tasker_workflow_steps (task_id, named_step_id, name, handler_class, state, transition_seq, retryable,
			attempts, max_attempts, created_at, updated_at, completed_at)
			SELECT task_id, (SELECT named_step_id FROM tasker_named_steps WHERE name = 'work'), 'work', 'tasker:noop',
			state, 2, true, 1, 3, created_at, completed_at, completed_at FROM tasker_tasks`,
		`INSERT INTO tasker_workflow_step_transitions (step_id, task_id, from_state, to_state, event, reason, actor,
			metadata, sort_key, created_at)
			SELECT step_id, task_id, 'pending', 'in_progress', 'claim', '', 'bench', '{"attempt":1}', 1, created_at
			FROM tasker_workflow_steps`,
		`INSERT INTO tasker_workflow_step_transitions (step_id, task_id, from_state, to_state, event, reason, actor,
			metadata, sort_key, created_at)
			SELECT step_id, task_id, 'in_progress', state,
			CASE state WHEN 'error' THEN 'fail_permanent' WHEN 'cancelled' THEN 'cancel' ELSE 'succeed' END, '', 'bench',
			(CASE WHEN state = 'error' AND task_id % 200 = 0 THEN '{"attempt":1,"error":{"kind":"lease_expired","message":"lease expired"}}'
			     WHEN state = 'error' THEN '{"attempt":1,"error":{"kind":"permanent","message":"boom"}}'
			     ELSE '{"attempt":1}' END)J, 2, completed_at
			FROM tasker_workflow_steps`,
		seq + `INSERT INTO tasker_tasks (named_task_id, namespace, name, version, state, context, tags,
			max_parallel_steps, created_at, updated_at)
			SELECT (SELECT named_task_id FROM tasker_named_tasks WHERE name = 'load'), 'bench', 'load', '1.0.0', 'pending',
			'{}', '[]', 10, ` + at + `, ` + at + ` FROM seq WHERE i > $1 - 1000`,
		`UPDATE tasker_tasks SET queue_operation = 'enqueue', queue_run_at = CASE WHEN task_id % 2 = 0 THEN created_at
			ELSE ` + strings.ReplaceAll(plus, "X", now) + ` END, queue_priority = 0, queue_attempts = 0, queue_reason = '',
			queue_created_at = created_at, queue_updated_at = created_at WHERE state = 'pending'`,
	}
	tx, err := db.BeginTx(ctx, nil)
	require.NoError(tb, err)
	for _, s := range stmts {
		if dialect == "sqlite" {
			s = strings.ReplaceAll(s, ")J,", "),")
		} else {
			s = strings.ReplaceAll(s, ")J,", ")::jsonb,")
		}
		var args []any
		if strings.Contains(s, "$1") {
			args = append(args, n)
		}
		_, err := tx.ExecContext(ctx, s, args...)
		require.NoError(tb, err, s)
	}
	require.NoError(tb, tx.Commit())
	_, err = db.ExecContext(ctx, "ANALYZE")
	require.NoError(tb, err)
}

// BenchmarkDashboardQueries times the overview and task list queries on
// 100,000 finished tasks, on SQLite and PostgreSQL. Each query must stay
// within queryBudget on average (the benchmark fails otherwise).
//
//	go test ./internal/ui -run '^$' -bench DashboardQueries -benchtime 20x
func BenchmarkDashboardQueries(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			var url string
			if backend == "sqlite" {
				url = "sqlite:" + testdb.SQLitePath(b)
			} else {
				url = testdb.PostgresURL(b)
			}
			ctx := context.Background()
			c, err := tasker.Open(ctx, tasker.Config{DatabaseURL: url, AutoMigrate: true, TemplatesDir: b.TempDir()})
			require.NoError(b, err)
			defer c.Close()
			start := time.Now()
			dsn := strings.TrimPrefix(url, "sqlite:")
			loadFinished(b, backend, dsn, benchTasks)
			b.Logf("%s: loaded %d finished tasks in %v", backend, benchTasks, time.Since(start).Round(time.Millisecond))
			d, err := openDB(ctx, url)
			require.NoError(b, err)
			defer d.close()

			from := time.Now().Add(-30 * time.Minute)
			to := time.Now().Add(-20 * time.Minute)
			cases := []struct {
				name string
				fn   func() error
			}{
				{"overview", func() error { _, err := d.overview(ctx, time.Now()); return err }},
				{"overview_by_state", func() error { return d.tasksByState(ctx, &overview{Now: time.Now()}) }},
				{"overview_finished", func() error { return d.finishedPerMinute(ctx, &overview{Now: time.Now()}) }},
				{"overview_failures", func() error { return d.failuresPerMinute(ctx, &overview{Now: time.Now()}) }},
				{"overview_queue", func() error { return d.queue(ctx, &overview{Now: time.Now()}) }},
				{"list", func() error { _, _, _, err := d.listTasks(ctx, &taskFilter{}); return err }},
				{"list_page_500", func() error { _, _, _, err := d.listTasks(ctx, &taskFilter{After: 50_000}); return err }},
				{"list_state_error", func() error { _, _, _, err := d.listTasks(ctx, &taskFilter{State: "error"}); return err }},
				{"list_state_pending", func() error { _, _, _, err := d.listTasks(ctx, &taskFilter{State: "pending"}); return err }},
				{"list_name", func() error {
					_, _, _, err := d.listTasks(ctx, &taskFilter{Namespace: "bench", Name: "sync", Version: "1.0.0"})
					return err
				}},
				{"list_tag", func() error { _, _, _, err := d.listTasks(ctx, &taskFilter{Tag: "batch"}); return err }},
				{"list_time_range", func() error { _, _, _, err := d.listTasks(ctx, &taskFilter{From: &from, To: &to}); return err }},
				{"list_no_match", func() error { _, _, _, err := d.listTasks(ctx, &taskFilter{Tag: "none"}); return err }},
				{"find_key", func() error { _, err := d.findTask(ctx, "key-4242"); return err }},
				{"find_id", func() error { _, err := d.findTask(ctx, "4242"); return err }},
			}
			for _, tc := range cases {
				b.Run(tc.name, func(b *testing.B) {
					require.NoError(b, tc.fn()) // warm up
					n := 0
					start := time.Now()
					for b.Loop() {
						if err := tc.fn(); err != nil {
							b.Fatal(err)
						}
						n++
					}
					per := time.Since(start) / time.Duration(n)
					b.ReportMetric(float64(per.Microseconds())/1000, "ms/query")
					if per > queryBudget {
						b.Errorf("%s takes %v per query, over the %v budget", tc.name, per, queryBudget)
					}
				})
			}
		})
	}
}
