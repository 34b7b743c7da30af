package postgres_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/store/postgres"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/taskertype"
)

// Admission reads the running tasks of each key through the key's index,
// not the backlog: on a table never analyzed (a new database, a bench's
// schema) and with a backlog of unfinished tasks, the plans of
// tasker_concurrency_start's statements (caught by auto_explain, nested
// statements included) and of ConcurrencyRunningMany (generic, as the
// engine's transactions run it) use tasker_tasks_concurrency and never
// tasker_tasks_unfinished. Given the keys as "= ANY (array)", both read
// every unfinished task once per admission (+50 % CPU per task with a key
// in tasker bench).
func TestConcurrencyAdmissionPlansUseTheKeyIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, url := migratedStore(t)

	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	create := func(key string) int64 {
		p := &store.TaskCreateParams{Namespace: "ns", Name: "plan", Version: "1.0.0", Context: []byte(`{}`),
			Initiator: "test", MaxParallelSteps: 1, Actor: "test", Now: t0,
			Steps: []store.StepSpec{{Name: "a", HandlerClass: "h", MaxAttempts: 1}},
			Queue: store.QueueOp{Kind: store.QueueUpsert, Operation: "enqueue", RunAt: t0}}
		if key != "" {
			p.Concurrency = &store.TaskConcurrency{Key: key, Limit: 2, Policy: "queue"}
		}
		res, err := st.TaskCreate(ctx, p)
		require.NoError(t, err)
		return res.Task.ID
	}
	for range 300 { // the backlog
		create("")
	}
	running := create("a")
	tr, err := st.TaskTransition(ctx, &store.TaskTransitionParams{TaskID: running,
		From: []taskertype.TaskState{taskertype.TaskStatePending}, To: taskertype.TaskStateInProgress,
		Event: "start", Now: t0})
	require.NoError(t, err)
	require.True(t, tr.Changed)
	pending := []int64{create("a"), create("a"), create("b")}

	var mu sync.Mutex
	var plans []string
	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		defer mu.Unlock()
		plans = append(plans, n.Message)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	for _, s := range []string{"LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0",
		"SET auto_explain.log_nested_statements = on", "SET auto_explain.log_level = notice",
		"SET client_min_messages = notice"} {
		_, err := conn.Exec(ctx, s)
		require.NoError(t, err, s)
	}
	rows, err := conn.Query(ctx, "SELECT started_id FROM tasker_concurrency_start($1, 'o', NULL, 'plan test')", pending)
	require.NoError(t, err)
	started, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	require.ElementsMatch(t, []int64{pending[0], pending[2]}, started, "a had room for one more (limit 2), b for both")

	q, _, err := postgres.QueriesForTest()
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "PREPARE running_many AS "+q["ConcurrencyRunningMany"])
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "SET plan_cache_mode = force_generic_plan")
	require.NoError(t, err)
	rows, err = conn.Query(ctx, "EXPLAIN EXECUTE running_many('{a,b}')")
	require.NoError(t, err)
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)

	mu.Lock()
	defer mu.Unlock()
	all := strings.Join(plans, "\n")
	require.Contains(t, all, "tasker_tasks_concurrency", "auto_explain's plans of the admission:\n%s", all)
	require.NotContains(t, all, "tasker_tasks_unfinished", "auto_explain's plans of the admission:\n%s", all)
	generic := strings.Join(lines, "\n")
	require.Contains(t, generic, "tasker_tasks_concurrency", "ConcurrencyRunningMany's generic plan:\n%s", generic)
	require.NotContains(t, generic, "tasker_tasks_unfinished", "ConcurrencyRunningMany's generic plan:\n%s", generic)
}

// The batch statements' generic plans find their rows by index even when
// they were made while the tables were a few pages (a new database or
// bench schema): a connection keeps its generic plan, and one made with a
// sequential scan (the cheapest on a tiny table) went on reading every
// task and step for each batch as the tables grew. The batch transaction's
// settings (BatchSettingsForTest) rule sequential scans out; without them,
// the same plans scan (checked too, so that the test fails if the tables
// ever stop being small enough to show it).
func TestBatchPlansMadeOnTinyTablesUseIndexes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, url := migratedStore(t)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for range 3 {
		_, err := st.TaskCreate(ctx, &store.TaskCreateParams{Namespace: "ns", Name: "tiny", Version: "1.0.0",
			Context: []byte(`{}`), Initiator: "test", MaxParallelSteps: 1, Actor: "test", Now: t0,
			Steps: []store.StepSpec{{Name: "a", HandlerClass: "h", MaxAttempts: 1}}})
		require.NoError(t, err)
	}
	q, _, err := postgres.QueriesForTest()
	require.NoError(t, err)
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })

	// plans returns each statement's generic plan under settings.
	plans := func(settings string) map[string]string {
		_, err := conn.Exec(ctx, "BEGIN; "+settings)
		require.NoError(t, err)
		defer func() { _, _ = conn.Exec(ctx, "ROLLBACK") }()
		out := map[string]string{}
		for _, name := range []string{"RecordBatch", "Summaries", "TaskMoves", "ClaimBatch", "LockTasks", "TaskStates",
			"StartedTasks"} {
			_, err := conn.Exec(ctx, "PREPARE plan_"+strings.ToLower(name)+" AS "+q[name])
			require.NoError(t, err, name)
			var n int
			require.NoError(t, conn.QueryRow(ctx, "SELECT cardinality(parameter_types) FROM pg_prepared_statements WHERE name = $1",
				"plan_"+strings.ToLower(name)).Scan(&n))
			args := strings.TrimSuffix(strings.Repeat("NULL, ", n), ", ")
			rows, err := conn.Query(ctx, "EXPLAIN EXECUTE plan_"+strings.ToLower(name)+"("+args+")")
			require.NoError(t, err, name)
			lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
			require.NoError(t, err, name)
			out[name] = strings.Join(lines, "\n")
			_, err = conn.Exec(ctx, "DEALLOCATE plan_"+strings.ToLower(name))
			require.NoError(t, err)
		}
		return out
	}
	scans := func(plan string) bool {
		return strings.Contains(plan, "Seq Scan on tasker_tasks") || strings.Contains(plan, "Seq Scan on tasker_workflow_steps")
	}
	for name, plan := range plans(postgres.BatchSettingsForTest) {
		require.False(t, scans(plan), "%s's generic plan in a batch transaction:\n%s", name, plan)
	}
	without := plans("SET LOCAL plan_cache_mode = force_generic_plan")
	scanned := 0
	for _, plan := range without {
		if scans(plan) {
			scanned++
		}
	}
	require.Positive(t, scanned, "without the batch settings, tiny tables give sequential scans: %v", without)
}

// The queue claim and the next due time are planned for their parameters
// on every call (sent unnamed, sqlcore.PerCallPlanner): no pool
// connection keeps a prepared statement of them, so none keeps a plan made
// while the tables were small. A statement the store prepares as usual
// (TaskGet) is there, so the check can fail.
func TestQueueStatementsArePlannedPerCall(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testdb.Postgres(t)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range 8 {
		res, err := st.TaskCreate(ctx, &store.TaskCreateParams{Namespace: "ns", Name: "q", Version: "1.0.0",
			Context: []byte(`{}`), Initiator: "test", MaxParallelSteps: 1, Actor: "test", Now: t0,
			Steps: []store.StepSpec{{Name: "a", HandlerClass: "h", MaxAttempts: 1}},
			Queue: store.QueueOp{Kind: store.QueueUpsert, Operation: "enqueue", RunAt: t0.Add(time.Duration(i) * time.Minute)}})
		require.NoError(t, err)
		_, err = st.TaskGet(ctx, res.Task.ID)
		require.NoError(t, err)
		_, err = st.QueueClaim(ctx, &store.QueueClaimParams{Owner: "r", Limit: 1, Now: t0, LeaseUntil: t0.Add(time.Minute), Start: i%2 == 0})
		require.NoError(t, err)
		_, err = st.QueueNextRunAt(ctx, t0)
		require.NoError(t, err)
	}
	for _, s := range []string{"WITH picked", "min(queue_run_at)"} {
		n, err := st.PreparedForTest(ctx, s)
		require.NoError(t, err)
		require.Zero(t, n, "%q is prepared on a pool connection", s)
	}
	q, _, err := postgres.QueriesForTest()
	require.NoError(t, err)
	n, err := st.PreparedForTest(ctx, q["TaskGet"])
	require.NoError(t, err)
	require.Positive(t, n, "TaskGet is prepared as usual")
}

// migratedStore opens a migrated store on a fresh schema and returns it
// with its URL (for connections of the test's own).
func migratedStore(t *testing.T) (*postgres.Store, string) {
	t.Helper()
	url := testdb.PostgresURL(t)
	st, err := postgres.Open(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	_, err = st.MigrateUp(context.Background(), 0)
	require.NoError(t, err)
	return st, url
}
