package tasker_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/faultinject"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/store/postgres"
	"github.com/tasker-systems/tasker/internal/store/sqlite"
	"github.com/tasker-systems/tasker/internal/testdb"
)

const oneStepYAML = "name: one\nnamespace_name: test\nstep_templates:\n  - {name: only, handler_class: H, default_retry_limit: %d}\n"

// openTuned opens a client with short leases for reliability tests.
func openTuned(t *testing.T, url, owner string, tune func(*tasker.Config)) *tasker.Client {
	t.Helper()
	cfg := tasker.Config{DatabaseURL: url, AutoMigrate: true, TemplatesDir: t.TempDir(), Backoff: fastBackoff(),
		PollInterval: 20 * time.Millisecond, RescueInterval: 50 * time.Millisecond, StepLease: 300 * time.Millisecond,
		QueueLease: 300 * time.Millisecond, ShutdownGrace: 100 * time.Millisecond, Owner: owner}
	if tune != nil {
		tune(&cfg)
	}
	c, err := tasker.Open(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func waitState(t *testing.T, c *tasker.Client, taskID int64, want tasker.TaskState) *tasker.TaskDetail {
	t.Helper()
	var d *tasker.TaskDetail
	require.Eventually(t, func() bool {
		var err error
		d, err = c.Task(context.Background(), taskID)
		return err == nil && d.State == want
	}, time.Minute, 20*time.Millisecond, "task %d never reached %s", taskID, want)
	return d
}

func stepEvents(t *testing.T, c *tasker.Client, taskID int64) []string {
	t.Helper()
	_, trs, err := c.Transitions(context.Background(), taskID)
	require.NoError(t, err)
	var out []string
	for _, tr := range trs {
		out = append(out, tr.Event+"/"+tr.Actor+"/"+tr.Reason)
	}
	return out
}

// A graceful shutdown (Close) releases a claimed step whose handler honours
// cancellation: the attempt is given back (not counted, not a failure), the
// task is handed back to the queue, and the next runner runs attempt 1.
func TestGracefulShutdownReleasesWithoutFailure(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		// Leases long enough that no rescue can come first on a loaded
		// machine: the release is what is tested.
		long := func(cfg *tasker.Config) { cfg.StepLease, cfg.QueueLease = 30*time.Second, 30*time.Second }
		first := openTuned(t, url, "leaving", long)
		started := make(chan struct{})
		first.RegisterHandler("H", tasker.StepHandlerFunc(func(ctx context.Context, sc *tasker.StepContext) (any, error) {
			close(started)
			<-ctx.Done() // honours cancellation after ShutdownGrace
			return nil, ctx.Err()
		}))
		_, err := first.AddTemplate("one.yml", fmt.Appendf(nil, oneStepYAML, 3))
		require.NoError(t, err)
		task, _, err := first.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "one"})
		require.NoError(t, err)
		runErr := make(chan error, 1)
		go func() { runErr <- first.Run(ctx, 2) }()
		<-started
		require.NoError(t, first.Close())
		require.NoError(t, <-runErr)

		second := openTuned(t, url, "arriving", long)
		d, err := second.Task(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, tasker.StepState("pending"), d.Steps[0].State)
		require.Equal(t, 0, d.Steps[0].Attempts, "a released attempt is not counted")
		evs := strings.Join(stepEvents(t, second, task.ID), "\n")
		require.Contains(t, evs, "release/leaving/released by a coordinator shutting down")
		require.NotContains(t, evs, "fail_")
		q, err := second.Queue(ctx)
		require.NoError(t, err)
		require.Len(t, q, 1, "the task was handed back to the queue")

		var attempts []int
		var mu sync.Mutex
		second.RegisterHandler("H", tasker.StepHandlerFunc(func(_ context.Context, sc *tasker.StepContext) (any, error) {
			mu.Lock()
			attempts = append(attempts, sc.Attempt)
			mu.Unlock()
			return "ok", nil
		}))
		_, err = second.AddTemplate("one.yml", fmt.Appendf(nil, oneStepYAML, 3))
		require.NoError(t, err)
		rctx, stop := context.WithCancel(ctx)
		defer stop()
		go func() { _ = second.Run(rctx, 2) }()
		d = waitState(t, second, task.ID, "complete")
		require.Equal(t, 1, d.Steps[0].Attempts)
		mu.Lock()
		require.Equal(t, []int{1}, attempts)
		mu.Unlock()
	})
}

// A handler that ignores cancellation cannot be released: the shutting-down
// coordinator abandons it to lease expiry and a rescuer counts the attempt
// as a retryable failure, naming the lost owner. Which runner's rescue pass
// gets there first is a race (on a loaded machine the shutting-down one's
// own last pass has), so either may have rescued it.
func TestShutdownAbandonsHandlerIgnoringCancellation(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		stuck := openTuned(t, url, "stubborn", nil)
		started := make(chan struct{})
		release := make(chan struct{})
		defer close(release)
		stuck.RegisterHandler("H", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) {
			close(started)
			<-release // ignores ctx
			return "late", nil
		}))
		_, err := stuck.AddTemplate("one.yml", fmt.Appendf(nil, oneStepYAML, 3))
		require.NoError(t, err)
		task, _, err := stuck.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "one"})
		require.NoError(t, err)
		go func() { _ = stuck.Run(ctx, 1) }()
		<-started
		closed := make(chan struct{})
		go func() { _ = stuck.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not return although the handler ignores cancellation")
		}

		live := openTuned(t, url, "rescuer", nil)
		live.RegisterHandler("H", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) { return "ok", nil }))
		_, err = live.AddTemplate("one.yml", fmt.Appendf(nil, oneStepYAML, 3))
		require.NoError(t, err)
		rctx, stop := context.WithCancel(ctx)
		defer stop()
		go func() { _ = live.Run(rctx, 1) }()
		d := waitState(t, live, task.ID, "complete")
		require.Equal(t, 2, d.Steps[0].Attempts, "the abandoned attempt counts")
		require.Regexp(t, `fail_retryable/(rescuer|stubborn)/lease of stubborn expired`,
			strings.Join(stepEvents(t, live, task.ID), "\n"))
	})
}

// When the lost attempt was the last one allowed, the rescuer fails the step
// permanently (with the reason) and the task fails; it is not retried.
func TestRescueOfLastAttemptFailsTask(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		dead := openTuned(t, url, "dead", nil)
		started := make(chan struct{})
		block := make(chan struct{})
		defer close(block)
		dead.RegisterHandler("H", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) {
			close(started)
			<-block
			return nil, nil
		}))
		_, err := dead.AddTemplate("one.yml", fmt.Appendf(nil, oneStepYAML, 1))
		require.NoError(t, err)
		task, _, err := dead.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "one"})
		require.NoError(t, err)
		hctx, crash := context.WithCancel(ctx)
		go func() { _, _ = dead.Handle(hctx, task.ID) }()
		<-started
		crash() // stops the heartbeat; with a handler that never returns this is a crash

		var ran atomic.Int32
		live := openTuned(t, url, "survivor", nil)
		live.RegisterHandler("H", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) {
			ran.Add(1)
			return "ok", nil
		}))
		_, err = live.AddTemplate("one.yml", fmt.Appendf(nil, oneStepYAML, 1))
		require.NoError(t, err)
		rctx, stop := context.WithCancel(ctx)
		defer stop()
		go func() { _ = live.Run(rctx, 1) }()
		d := waitState(t, live, task.ID, "error")
		require.Equal(t, tasker.StepState("error"), d.Steps[0].State)
		require.Equal(t, 1, d.Steps[0].Attempts)
		require.Zero(t, ran.Load(), "no attempt beyond max_attempts")
		var doc struct {
			Kind    string `json:"kind"`
			Message string `json:"message"`
		}
		require.NoError(t, json.Unmarshal(d.Steps[0].Error, &doc))
		require.Equal(t, "lease_expired", doc.Kind)
		require.Contains(t, doc.Message, "lease of dead expired")
	})
}

// A queue entry leased by a runner that died is claimed by another runner
// once the lease expires: the owner of the expired lease does not matter.
func TestDeadRunnersQueueLeaseIsReclaimed(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		var st store.Store
		var err error
		if strings.HasPrefix(url, "sqlite:") {
			st, err = sqlite.Open(ctx, strings.TrimPrefix(url, "sqlite:"))
		} else {
			st, err = postgres.Open(ctx, url)
		}
		require.NoError(t, err)
		defer st.Close()
		live := openTuned(t, url, "live", nil)
		live.RegisterHandler("H", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) { return "ok", nil }))
		_, err = live.AddTemplate("one.yml", fmt.Appendf(nil, oneStepYAML, 3))
		require.NoError(t, err)
		task, _, err := live.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "one"})
		require.NoError(t, err)
		// The "dead" runner claims the entry, then never extends or acks it.
		const lease = 2 * time.Second
		now := time.Now()
		claimed, err := st.QueueClaim(ctx, &store.QueueClaimParams{Owner: "dead", Limit: 10, Now: now, LeaseUntil: now.Add(lease)})
		require.NoError(t, err)
		require.Len(t, claimed, 1)
		rctx, stop := context.WithCancel(ctx)
		defer stop()
		go func() { _ = live.Run(rctx, 1) }()
		time.Sleep(200 * time.Millisecond)
		d, err := live.Task(ctx, task.ID)
		require.NoError(t, err)
		// Only meaningful while the lease runs: a loaded machine may have
		// slept through most of it.
		if time.Since(now) < lease-500*time.Millisecond {
			require.Equal(t, tasker.TaskState("pending"), d.State, "a live lease is respected")
		}
		waitState(t, live, task.ID, "complete")
	})
}

// execSQL runs statements on the test database behind url (a fresh schema
// on PostgreSQL, the file on SQLite).
func execSQL(t *testing.T, url string, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	if path, ok := strings.CutPrefix(url, "sqlite:"); ok {
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
		require.NoError(t, err)
		defer db.Close()
		for _, s := range stmts {
			_, err := db.ExecContext(ctx, s)
			require.NoError(t, err, s)
		}
		return
	}
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	for _, s := range stmts {
		_, err := conn.Exec(ctx, s)
		require.NoError(t, err, s)
	}
}

// A transaction that fails halfway leaves nothing half-written: a failure
// injected (by a trigger) after the task and its steps were inserted undoes
// them all, and a failure while recording a result leaves the step claimed
// as it was, to be rescued when its lease expires.
func TestTransactionFailingHalfwayWritesNothing(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		sqlite := strings.HasPrefix(url, "sqlite:")
		c := openTuned(t, url, "tx", nil)
		c.RegisterHandler("H", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) { return "ok", nil }))
		_, err := c.AddTemplate("two.yml", []byte("name: two\nnamespace_name: test\nstep_templates:\n"+
			"  - {name: a, handler_class: H}\n  - {name: b, handler_class: H, depends_on_step: a}\n"))
		require.NoError(t, err)

		if sqlite {
			execSQL(t, url, `CREATE TRIGGER fail_edges BEFORE INSERT ON tasker_workflow_step_edges BEGIN SELECT RAISE(ABORT, 'injected failure'); END`)
		} else {
			execSQL(t, url, `CREATE FUNCTION fail_now() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$`,
				`CREATE TRIGGER fail_edges BEFORE INSERT ON tasker_workflow_step_edges FOR EACH ROW EXECUTE FUNCTION fail_now()`)
		}
		_, _, err = c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "two", IdempotencyKey: "k1"})
		require.ErrorContains(t, err, "injected failure")
		require.Zero(t, countTasks(t, c), "no task row survived the failed transaction")
		q, err := c.Queue(ctx)
		require.NoError(t, err)
		require.Empty(t, q, "no enqueue record survived")
		execSQL(t, url, `DROP TRIGGER fail_edges`+map[bool]string{true: "", false: " ON tasker_workflow_step_edges"}[sqlite])
		task, created, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "two", IdempotencyKey: "k1"})
		require.NoError(t, err)
		require.True(t, created, "the idempotency key was not taken by the failed attempt")

		// Fail the recording of step a's success after its UPDATE ran.
		if sqlite {
			execSQL(t, url, `CREATE TRIGGER fail_succeed BEFORE INSERT ON tasker_workflow_step_transitions WHEN NEW.event = 'succeed' BEGIN SELECT RAISE(ABORT, 'injected failure'); END`)
		} else {
			execSQL(t, url, `CREATE TRIGGER fail_succeed BEFORE INSERT ON tasker_workflow_step_transitions FOR EACH ROW WHEN (NEW.event = 'succeed') EXECUTE FUNCTION fail_now()`)
		}
		_, err = c.Handle(ctx, task.ID)
		require.ErrorContains(t, err, "injected failure")
		d, err := c.Task(ctx, task.ID)
		require.NoError(t, err)
		a := d.Steps[0]
		require.Equal(t, tasker.StepState("in_progress"), a.State, "the step's update was rolled back with the transition")
		require.Empty(t, a.Results)
		require.Equal(t, "tx", a.LeaseOwner)
		_, trs, err := c.Transitions(ctx, task.ID)
		require.NoError(t, err)
		for _, tr := range trs {
			require.NotEqual(t, "succeed", tr.Event)
		}
		execSQL(t, url, `DROP TRIGGER fail_succeed`+map[bool]string{true: "", false: " ON tasker_workflow_step_transitions"}[sqlite])
		rctx, stop := context.WithCancel(ctx)
		defer stop()
		go func() { _ = c.Run(rctx, 1) }()
		d = waitState(t, c, task.ID, "complete")
		require.Equal(t, 2, d.Steps[0].Attempts, "the attempt whose result was lost counts; the rescuer retried it")
	})
}

// countingLog counts log records whose message starts with a prefix.
type countingLog struct {
	slog.Handler
	prefix string
	n      *atomic.Int64
}

func (h countingLog) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasPrefix(r.Message, h.prefix) {
		h.n.Add(1)
	}
	return nil
}
func (h countingLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countingLog) WithGroup(string) slog.Handler      { return h }

// A runner survives PostgreSQL crashing (pg_ctl restart -m immediate) and
// refusing connections for a few seconds (stopped, then started again):
// Run keeps going, backs off instead of spinning while the database is
// down, and every task completes; no task is lost or stranded. It starts a
// cluster of its own, so that restarting it disturbs nobody.
func TestRunnerSurvivesPostgresRestart(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("restarts a PostgreSQL cluster")
	}
	testdb.PostgresServerURL(t) // skips (or fails under CI) without PostgreSQL
	if _, err := faultinject.FindPGBin(); err != nil {
		t.Skip(err)
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "tasker-pgrestart-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	cluster, err := faultinject.StartCluster(ctx, dir)
	require.NoError(t, err)
	t.Cleanup(func() { _ = cluster.Stop(context.Background()) })

	var claimWarnings atomic.Int64
	logger := slog.New(countingLog{Handler: slog.DiscardHandler, prefix: "claim queue", n: &claimWarnings})
	c := openTuned(t, cluster.URL, "survivor", func(cfg *tasker.Config) {
		cfg.StepLease, cfg.QueueLease, cfg.Logger = 2*time.Second, 3*time.Second, logger
	})
	var ran atomic.Int64
	c.RegisterHandler("Recorder", tasker.StepHandlerFunc(func(ctx context.Context, sc *tasker.StepContext) (any, error) {
		ran.Add(1)
		time.Sleep(5 * time.Millisecond)
		return "ok", nil
	}))
	_, err = c.AddTemplate("d.yml", []byte(templateYAML(newShape("diamond", "a", "b<a", "c<a", "d<b,c"), 5, nil, nil)))
	require.NoError(t, err)

	rctx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- c.Run(rctx, 4) }()
	var ids []int64
	create := func(n int) {
		for range n {
			for {
				task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "diamond",
					IdempotencyKey: fmt.Sprintf("k%d", len(ids))})
				if err == nil {
					ids = append(ids, task.ID)
					break
				}
				time.Sleep(100 * time.Millisecond) // the database is down: the caller retries with the same key
			}
		}
	}
	create(20)
	require.NoError(t, cluster.Restart(ctx))
	create(20)
	require.NoError(t, cluster.Halt(ctx))
	warnBefore := claimWarnings.Load()
	time.Sleep(4 * time.Second) // connections refused
	warnDown := claimWarnings.Load() - warnBefore
	require.NoError(t, cluster.Start(ctx))
	create(20)
	for _, id := range ids {
		waitState(t, c, id, "complete")
	}
	select {
	case err := <-runErr:
		t.Fatalf("Run returned while the database was failing: %v", err)
	default:
	}
	stop()
	require.NoError(t, <-runErr)
	require.Len(t, ids, 60)
	q, err := c.Queue(ctx)
	require.NoError(t, err)
	require.Empty(t, q, "nothing left in the queue")
	// PollInterval is 20 ms: a spinning runner would log ~200 failures in 4 s.
	require.Less(t, warnDown, int64(15), "Run backs off while the database refuses connections")
	require.GreaterOrEqual(t, ran.Load(), int64(4*60))
}

var _ = errors.New

// A database error while recording results (a dropped connection, a
// restarting server) does not throw the finished attempts away: the
// coordinator retries the recording transaction while its lease lasts, so
// the handler's verdict is kept and no attempt is wasted. The failure is
// injected by a trigger that fails the first two tries (a sequence survives
// the rollbacks).
func TestRecordRetriesTransientDatabaseErrors(t *testing.T) {
	t.Parallel()
	url := testdb.PostgresURL(t)
	ctx := context.Background()
	c := openTuned(t, url, "retrier", func(cfg *tasker.Config) { cfg.StepLease = 5 * time.Second })
	var ran atomic.Int32
	c.RegisterHandler("H", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) {
		ran.Add(1)
		return nil, tasker.Permanent(errors.New("card declined"))
	}))
	_, err := c.AddTemplate("one.yml", fmt.Appendf(nil, oneStepYAML, 3))
	require.NoError(t, err)
	task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "one"})
	require.NoError(t, err)
	execSQL(t, url, `CREATE SEQUENCE fail_count`,
		`CREATE FUNCTION fail_twice() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
			IF nextval('fail_count') <= 2 THEN RAISE EXCEPTION 'injected transient failure'; END IF; RETURN NEW; END $$`,
		`CREATE TRIGGER fail_record BEFORE INSERT ON tasker_workflow_step_transitions FOR EACH ROW
			WHEN (NEW.event = 'fail_permanent') EXECUTE FUNCTION fail_twice()`)
	res, err := c.Handle(ctx, task.ID)
	require.NoError(t, err)
	require.Equal(t, tasker.TaskState("error"), res.Status)
	d, err := c.Task(ctx, task.ID)
	require.NoError(t, err)
	require.Equal(t, tasker.StepState("error"), d.Steps[0].State)
	require.Equal(t, 1, d.Steps[0].Attempts)
	require.Equal(t, int32(1), ran.Load(), "the permanent verdict was recorded, not lost and retried")
}

// A live runner keeps the leases of the enqueue records it works on: with
// a queue lease far shorter than the handlers, every record stays leased
// to it, with an expiry in the future, until its task finishes (one
// heartbeat statement extends all of them).
func TestLiveRunnerKeepsItsQueueLeases(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		c := openTuned(t, url, "holder", func(cfg *tasker.Config) {
			// Heartbeats every 200 ms; without them the leases expire after
			// 600 ms, well inside the 2 s watched below.
			cfg.QueueLease, cfg.StepLease = 600*time.Millisecond, 10*time.Second
		})
		release := make(chan struct{})
		var running sync.WaitGroup
		running.Add(2)
		c.RegisterHandler("H", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) {
			running.Done()
			<-release
			return "ok", nil
		}))
		_, err := c.AddTemplate("one.yml", fmt.Appendf(nil, oneStepYAML, 3))
		require.NoError(t, err)
		var ids []int64
		for range 2 {
			task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "one"})
			require.NoError(t, err)
			ids = append(ids, task.ID)
		}
		rctx, stop := context.WithCancel(ctx)
		defer stop()
		go func() { _ = c.Run(rctx, 2) }()
		running.Wait()
		for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			q, err := c.Queue(ctx)
			require.NoError(t, err)
			require.Len(t, q, 2)
			now := time.Now()
			for _, e := range q {
				require.Equal(t, "holder", e.LeaseOwner, "task %d", e.TaskID)
				require.NotNil(t, e.LeaseExpiresAt)
				require.True(t, e.LeaseExpiresAt.After(now), "task %d: lease expired at %s, now %s", e.TaskID, e.LeaseExpiresAt, now)
			}
		}
		close(release)
		for _, id := range ids {
			waitState(t, c, id, "complete")
		}
		q, err := c.Queue(ctx)
		require.NoError(t, err)
		require.Empty(t, q)
	})
}
