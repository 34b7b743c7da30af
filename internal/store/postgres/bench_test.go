package postgres_test

// Benchmarks of the hot store paths against issue 2's targets: viable-step
// discovery for a 1,000-step task with 100,000 finished tasks in the tables
// (target: well under 5 ms on PostgreSQL), creating a 1,000-step task
// (target: under 50 ms), and batched claims and completions. PostgreSQL
// benchmarks skip when TEST_DATABASE_URL is unset. Run them with
//
//	TEST_DATABASE_URL=... go test -run '^$' -bench . -benchtime 200x ./internal/store/postgres/

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/store/postgres"
	"github.com/tasker-systems/tasker/internal/store/storetest"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/taskertype"
)

func seedFinished(tb testing.TB, url string, n int) {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	stmts := []string{
		`INSERT INTO tasker_namespaces (name, created_at) VALUES ('seed', now())`,
		`INSERT INTO tasker_named_tasks (namespace_id, name, version, created_at)
			SELECT namespace_id, 'seeded', '1.0.0', now() FROM tasker_namespaces WHERE name = 'seed'`,
		`INSERT INTO tasker_named_steps (named_task_id, name, handler_class)
			SELECT named_task_id, 's' || i, 'tasker:noop' FROM tasker_named_tasks, generate_series(0, 2) i`,
		fmt.Sprintf(`INSERT INTO tasker_tasks (named_task_id, namespace, name, version, state, transition_seq, context,
			max_parallel_steps, created_at, updated_at, completed_at)
			SELECT (SELECT named_task_id FROM tasker_named_tasks LIMIT 1), 'seed', 'seeded', '1.0.0', 'complete', 3, '{}',
				10, now() - interval '1 day', now() - interval '1 day', now() - interval '1 day'
			FROM generate_series(1, %d)`, n),
		`INSERT INTO tasker_workflow_steps (task_id, named_step_id, name, handler_class, state, transition_seq, retryable,
			attempts, max_attempts, results, created_at, updated_at, completed_at)
			SELECT t.task_id, ns.named_step_id, ns.name, 'tasker:noop', 'complete', 3, true, 1, 3, '{"ok":true}',
				t.created_at, t.created_at, t.created_at
			FROM tasker_tasks t CROSS JOIN tasker_named_steps ns ORDER BY t.task_id, ns.name`,
		`INSERT INTO tasker_workflow_step_edges (task_id, from_step_id, to_step_id)
			SELECT a.task_id, a.step_id, b.step_id FROM tasker_workflow_steps a
			JOIN tasker_workflow_steps b ON b.task_id = a.task_id
				AND ((a.name = 's0' AND b.name = 's1') OR (a.name = 's1' AND b.name = 's2'))`,
		`INSERT INTO tasker_task_transitions (task_id, from_state, to_state, event, sort_key, created_at)
			SELECT task_id, x.f, x.t, x.e, x.k, created_at FROM tasker_tasks,
			(VALUES (NULL, 'pending', 'initialize', 1), ('pending', 'in_progress', 'start', 2),
				('in_progress', 'complete', 'complete', 3)) AS x(f, t, e, k)`,
		`INSERT INTO tasker_workflow_step_transitions (step_id, task_id, from_state, to_state, event, sort_key, created_at)
			SELECT step_id, task_id, x.f, x.t, x.e, x.k, created_at FROM tasker_workflow_steps,
			(VALUES (NULL, 'pending', 'initialize', 1), ('pending', 'in_progress', 'claim', 2),
				('in_progress', 'complete', 'succeed', 3)) AS x(f, t, e, k)`,
		`ANALYZE`,
	}
	for _, q := range stmts {
		if _, err := conn.Exec(ctx, q); err != nil {
			tb.Fatalf("seed: %v\n%s", err, q)
		}
	}
}

// discoveryFixture is a PostgreSQL store holding finished tasks and one live
// fan-out task whose root completed, so its 998 leaves are ready.
type discoveryFixture struct {
	st     *postgres.Store
	url    string
	taskID int64
}

const (
	seededTasks = 100_000
	liveWidth   = 998 // + root + join = 1,000 steps
)

func newDiscoveryFixture(b *testing.B) *discoveryFixture {
	b.Helper()
	url := testdb.PostgresURL(b)
	ctx := context.Background()
	st, err := postgres.Open(ctx, url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	if _, err := st.MigrateUp(ctx, 0); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	seedFinished(b, url, seededTasks)
	b.Logf("seeded %d finished tasks (300k steps, 200k edges, 1.2M transitions) in %s", seededTasks, time.Since(t0).Round(time.Millisecond))
	res, err := st.TaskCreate(ctx, storetest.FanOut(liveWidth, ""))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	cs, err := st.StepClaim(ctx, &store.StepClaimParams{TaskID: res.Task.ID, Owner: "bench", Limit: 1, Now: now, LeaseUntil: now.Add(time.Minute)})
	if err != nil || len(cs) != 1 {
		b.Fatalf("claim root: %v (%d claimed)", err, len(cs))
	}
	if _, err := st.StepRecord(ctx, &store.StepRecordParams{TaskID: res.Task.ID, Owner: "bench", Now: now,
		Outcomes: []store.StepOutcome{{StepID: cs[0].Step.ID, To: taskertype.StepStateComplete, Event: "succeed", Results: []byte(`{}`)}}}); err != nil {
		b.Fatal(err)
	}
	return &discoveryFixture{st: st, url: url, taskID: res.Task.ID}
}

// BenchmarkDiscoveryPostgres measures viable-step discovery for a 1,000-step
// task (998 ready leaves) with 100,000 finished tasks in the tables: the
// claim's candidate query (what the coordinator runs), the finalizer's
// summary, and the per-step explain (StepReadiness).
func BenchmarkDiscoveryPostgres(b *testing.B) {
	f := newDiscoveryFixture(b)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)

	b.Run("candidates", func(b *testing.B) {
		q := postgres.DiscoverySQLForBench()
		for b.Loop() {
			rows, err := conn.Query(ctx, q, f.taskID, time.Now(), 1000)
			if err != nil {
				b.Fatal(err)
			}
			n := 0
			for rows.Next() {
				n++
			}
			rows.Close()
			if rows.Err() != nil || n != liveWidth {
				b.Fatalf("discovered %d steps (want %d): %v", n, liveWidth, rows.Err())
			}
		}
	})
	b.Run("summary", func(b *testing.B) {
		for b.Loop() {
			sum, err := f.st.TaskSummary(ctx, f.taskID, time.Now())
			if err != nil || sum.Ready != liveWidth {
				b.Fatalf("summary: %v %+v", err, sum)
			}
		}
	})
	b.Run("explain", func(b *testing.B) {
		for b.Loop() {
			rs, err := f.st.StepReadiness(ctx, f.taskID, time.Now())
			if err != nil || len(rs) != liveWidth+2 {
				b.Fatalf("readiness: %v (%d rows)", err, len(rs))
			}
		}
	})
}

// BenchmarkClaimRecordPostgres measures one batch of 100 steps of the
// 1,000-step task: claimed in one statement, completed in one transaction.
// Round trips per batch are reported.
func BenchmarkClaimRecordPostgres(b *testing.B) {
	f := newDiscoveryFixture(b)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.url)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	var claimTrips, recordTrips int64
	var claimTime, recordTime time.Duration
	n := 0
	for b.Loop() {
		now := time.Now()
		rt0 := f.st.RoundTrips()
		t0 := time.Now()
		cs, err := f.st.StepClaim(ctx, &store.StepClaimParams{TaskID: f.taskID, Owner: "bench", Limit: 100, Now: now,
			LeaseUntil: now.Add(time.Minute)})
		if err != nil || len(cs) != 100 {
			b.Fatalf("claim: %v (%d)", err, len(cs))
		}
		t1 := time.Now()
		rt1 := f.st.RoundTrips()
		outs := make([]store.StepOutcome, len(cs))
		for i, c := range cs {
			outs[i] = store.StepOutcome{StepID: c.Step.ID, To: taskertype.StepStateComplete, Event: "succeed", Results: []byte(`{"ok":true}`)}
		}
		if _, err := f.st.StepRecord(ctx, &store.StepRecordParams{TaskID: f.taskID, Owner: "bench", Now: now, Outcomes: outs}); err != nil {
			b.Fatal(err)
		}
		claimTime += t1.Sub(t0)
		recordTime += time.Since(t1)
		claimTrips += rt1 - rt0
		recordTrips += f.st.RoundTrips() - rt1
		n++
		b.StopTimer()
		// Put the leaves back so that every iteration claims 100 of 998.
		if _, err := conn.Exec(ctx, `UPDATE tasker_workflow_steps SET state = 'pending', attempts = 0
			WHERE task_id = $1 AND name LIKE 'leaf%' AND state = 'complete'`, f.taskID); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(claimTime.Microseconds())/float64(n)/1000, "claim-ms/100")
	b.ReportMetric(float64(recordTime.Microseconds())/float64(n)/1000, "record-ms/100")
	b.ReportMetric(float64(claimTrips)/float64(n), "claim-roundtrips/100")
	b.ReportMetric(float64(recordTrips)/float64(n), "record-roundtrips/100")
}

// BenchmarkTaskCreate1000 measures creating a 1,000-step fan-out task in
// one transaction.
func BenchmarkTaskCreate1000(b *testing.B) {
	storetest.BenchTaskCreate(b, testdb.Postgres(b), liveWidth)
}

// BenchmarkTaskPrune measures deleting a batch of 500 due 12-step tasks.
func BenchmarkTaskPrune(b *testing.B) { storetest.BenchTaskPrune(b, testdb.Postgres(b)) }
