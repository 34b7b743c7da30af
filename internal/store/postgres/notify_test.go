package postgres_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/store/postgres"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/taskertype"
)

// Runners are notified when queue work becomes available, and only then: a
// claim (even one that finds nothing) must not wake every idle runner, or
// idle runners wake each other in a loop.
func TestQueueNotifications(t *testing.T) {
	t.Parallel()
	st := testdb.Postgres(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := st.Listen(ctx)
	require.NoError(t, err)
	// A notification that must come is waited for generously (a loaded
	// machine delays it); one that must not come is watched for 500 ms.
	expect := func(want bool, what string) {
		t.Helper()
		wait := 500 * time.Millisecond
		if want {
			wait = 30 * time.Second
		}
		select {
		case <-ch:
			require.True(t, want, "unexpected notification after %s", what)
		case <-time.After(wait):
			require.False(t, want, "no notification after %s", what)
		}
	}
	expect(true, "connecting") // the wake-up after (re)connecting
	now := time.Now()
	claim := func() []*store.QueueEntry {
		got, err := st.QueueClaim(ctx, &store.QueueClaimParams{Owner: "r", Limit: 5, Now: time.Now(), LeaseUntil: time.Now().Add(time.Minute)})
		require.NoError(t, err)
		return got
	}
	require.Empty(t, claim())
	expect(false, "an empty claim")

	_, err = st.TaskCreate(ctx, &store.TaskCreateParams{Namespace: "ns", Name: "n", Version: "1.0.0",
		Context: json.RawMessage(`{}`), MaxParallelSteps: 1, Actor: "t", Now: now,
		Steps: []store.StepSpec{{Name: "a", HandlerClass: "h", Retryable: true, MaxAttempts: 1}},
		Queue: store.QueueOp{Kind: store.QueueUpsert, Operation: "enqueue", RunAt: now}})
	require.NoError(t, err)
	expect(true, "an enqueue")

	entries := claim()
	require.Len(t, entries, 1)
	expect(false, "a claim that took an entry")

	require.NoError(t, st.QueueRelease(ctx, entries[0].TaskID, "r", time.Now()))
	expect(true, "a release")
}

// Notifications are sent by the application after commit, debounced: a
// burst of creations wakes a listener a few times, not once per task, and
// the last creation of a burst is announced too (the trailing
// notification); a task created in the caller's transaction is announced
// at its commit, and not on rollback.
func TestQueueAnnouncementsDebounced(t *testing.T) {
	t.Parallel()
	dbURL := testdb.PostgresURL(t)
	st, err := postgres.Open(context.Background(), dbURL)
	require.NoError(t, err)
	defer st.Close()
	_, err = st.MigrateUp(context.Background(), 0)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := st.Listen(ctx)
	require.NoError(t, err)
	select {
	case <-ch: // the wake-up after connecting
	case <-time.After(30 * time.Second):
		t.Fatal("no wake-up after connecting")
	}
	var mu sync.Mutex
	got := 0
	go func() {
		for range ch {
			mu.Lock()
			got++
			mu.Unlock()
		}
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return got }
	create := func() {
		now := time.Now()
		_, err := st.TaskCreate(ctx, &store.TaskCreateParams{Namespace: "ns", Name: "n", Version: "1.0.0",
			Context: json.RawMessage(`{}`), MaxParallelSteps: 1, Actor: "t", Now: now,
			Steps: []store.StepSpec{{Name: "a", HandlerClass: "h", Retryable: true, MaxAttempts: 1}},
			Queue: store.QueueOp{Kind: store.QueueUpsert, Operation: "enqueue", RunAt: now}})
		require.NoError(t, err)
	}
	var wg sync.WaitGroup
	const n = 200
	start := time.Now()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range n / 8 {
				create()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	require.Eventually(t, func() bool { return count() >= 1 }, 30*time.Second, 5*time.Millisecond)
	// At most one notification per window, plus the trailing one (the
	// listener's channel holds one value, so it may see fewer).
	require.LessOrEqual(t, count(), int(elapsed/(5*time.Millisecond))+2)
	require.Less(t, count(), n)

	// The trailing notification: a quiet period, then one creation.
	time.Sleep(50 * time.Millisecond)
	before := count()
	create()
	require.Eventually(t, func() bool { return count() > before }, 30*time.Second, 5*time.Millisecond)

	// In the caller's transaction: nothing on rollback, one at commit.
	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	defer pool.Close()
	for _, commit := range []bool{false, true} {
		time.Sleep(50 * time.Millisecond)
		before := count()
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		now := time.Now()
		_, err = st.TaskCreateTx(ctx, tx, &store.TaskCreateParams{Namespace: "ns", Name: "n", Version: "1.0.0",
			Context: json.RawMessage(`{}`), MaxParallelSteps: 1, Actor: "t", Now: now,
			Steps: []store.StepSpec{{Name: "a", HandlerClass: "h", Retryable: true, MaxAttempts: 1}},
			Queue: store.QueueOp{Kind: store.QueueUpsert, Operation: "enqueue", RunAt: now}})
		require.NoError(t, err)
		if commit {
			require.NoError(t, tx.Commit(ctx))
			require.Eventually(t, func() bool { return count() > before }, 30*time.Second, 5*time.Millisecond)
		} else {
			require.NoError(t, tx.Rollback(ctx))
			time.Sleep(300 * time.Millisecond)
			require.Equal(t, before, count(), "a rolled-back creation notified")
		}
	}
}

// The database's own wakes notify the runners (migration 0020): a task of
// a concurrency key that stops running makes the key's parked task due
// inside its transaction, which the application cannot see, so the
// trigger sends the NOTIFY, delivered at commit. A transition that wakes
// nothing sends none.
func TestConcurrencyWakeNotifies(t *testing.T) {
	t.Parallel()
	st := testdb.Postgres(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	now := time.Now().UTC().Truncate(time.Millisecond)
	keyed := func() int64 {
		res, err := st.TaskCreate(ctx, &store.TaskCreateParams{Namespace: "ns", Name: "keyed", Version: "1.0.0",
			Context: json.RawMessage(`{}`), MaxParallelSteps: 1, Actor: "t", Now: now,
			Steps:       []store.StepSpec{{Name: "a", HandlerClass: "h", Retryable: true, MaxAttempts: 1}},
			Concurrency: &store.TaskConcurrency{Key: "acct-1", Limit: 1, Policy: "queue"},
			Queue:       store.QueueOp{Kind: store.QueueUpsert, Operation: "enqueue", RunAt: now}})
		require.NoError(t, err)
		return res.Task.ID
	}
	pending := []taskertype.TaskState{taskertype.TaskStatePending, taskertype.TaskStateWaitingForRetry}
	admit := func(id int64, at time.Time) store.AdmitOutcome {
		res, err := st.TaskAdmit(ctx, &store.TaskAdmitParams{TaskID: id,
			Start: &store.TaskTransitionParams{TaskID: id, From: pending, To: taskertype.TaskStateInProgress,
				Event: "start", Actor: "r", Now: at},
			Park: store.QueueOp{Kind: store.QueueUpsert, Operation: "reenqueue", RunAt: at.Add(time.Hour)}})
		require.NoError(t, err)
		return res.Outcome
	}
	a, b := keyed(), keyed()
	require.Equal(t, store.AdmitStarted, admit(a, now))
	require.Equal(t, store.AdmitParked, admit(b, now.Add(time.Millisecond)))

	ch, err := st.Listen(ctx)
	require.NoError(t, err)
	// Drain the wake-up of (re)connecting until 500 ms pass without one.
	for drained := false; !drained; {
		select {
		case <-ch:
		case <-time.After(500 * time.Millisecond):
			drained = true
		}
	}
	inProgress := []taskertype.TaskState{taskertype.TaskStateInProgress}
	_, err = st.TaskTransition(ctx, &store.TaskTransitionParams{TaskID: a, From: inProgress,
		To: taskertype.TaskStateWaitingForRetry, Event: "wait", Now: now.Add(2 * time.Millisecond)})
	require.NoError(t, err)
	select {
	case <-ch:
		t.Fatal("a transition that woke nothing notified the runners")
	case <-time.After(500 * time.Millisecond):
	}
	_, err = st.TaskTransition(ctx, &store.TaskTransitionParams{TaskID: a,
		From: []taskertype.TaskState{taskertype.TaskStateWaitingForRetry}, To: taskertype.TaskStateError, Event: "fail",
		Now: now.Add(3 * time.Millisecond), Queue: store.QueueOp{Kind: store.QueueDelete}})
	require.NoError(t, err)
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatal("the wake of the parked task did not notify the runners")
	}
}
