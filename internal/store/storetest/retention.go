package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/store/sqlcore"
	"github.com/tasker-systems/tasker/taskertype"
)

// taskTables are the tables holding rows keyed by a task, each with its
// task_id column: pruning a task must leave none of them.
var taskTables = []string{"tasker_tasks", "tasker_workflow_steps", "tasker_workflow_step_edges",
	"tasker_task_transitions", "tasker_workflow_step_transitions", "tasker_task_queue"}

// taskRows counts the rows of each of taskTables keyed by taskID (read
// straight from the database: what the store's reads show is not enough to
// prove that nothing is left).
func taskRows(t *testing.T, st store.Store, taskID int64) map[string]int {
	t.Helper()
	db, ok := st.(interface{ DB() sqlcore.Database })
	require.True(t, ok, "the store has no DB()")
	out := map[string]int{}
	for _, table := range taskTables {
		var n int
		require.NoError(t, db.DB().QueryRow(context.Background(),
			fmt.Sprintf("SELECT count(*) FROM %s WHERE task_id = $1", table), taskID).Scan(&n), table)
		out[table] = n
	}
	return out
}

// retained is a diamond task kept keep after it finished and keepFailed
// after it failed (nil: for ever).
func retained(key string, keep, keepFailed *time.Duration) *store.TaskCreateParams {
	p := diamond(key)
	p.Retention, p.RetentionFailed = keep, keepFailed
	return p
}

func dur(d time.Duration) *time.Duration { return &d }

// moveTask applies a task transition that must apply.
func moveTask(t *testing.T, st store.Store, id int64, from, to taskertype.TaskState, at time.Time) {
	t.Helper()
	tr, err := st.TaskTransition(context.Background(), &store.TaskTransitionParams{TaskID: id,
		From: []taskertype.TaskState{from}, To: to, Event: "test", Now: at})
	require.NoError(t, err)
	require.True(t, tr.Changed, "task %d %s -> %s", id, from, to)
}

// exerciseRetention is the conformance of store.Store.TaskPrune and
// TaskPruneCount.
func exerciseRetention(t *testing.T, newStore NewStore) {
	ctx := context.Background()

	// Each task's retention is decided at creation; keep_until is set when
	// it finishes (by the retention of the state it reached) and cleared
	// when it leaves a terminal state. Pruning deletes exactly the due
	// tasks, oldest due first, at most Limit per call, with every row keyed
	// by them, and frees their idempotency keys; --older-than
	// (FinishedBefore) overrides the tasks' own retention.
	t.Run("TaskPruneDeletesExactlyTheDueTasks", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		create := func(p *store.TaskCreateParams) int64 {
			res, err := st.TaskCreate(ctx, p)
			require.NoError(t, err)
			require.True(t, res.Created)
			return res.Task.ID
		}
		hour, tenHours := dur(time.Hour), dur(10*time.Hour)
		done := create(retained("k-done", hour, tenHours))       // complete at t0: due at t0+1h
		failed := create(retained("", hour, tenHours))           // error at t0: due at t0+10h
		forever := create(retained("", nil, nil))                // complete at t0: kept for ever
		running := create(retained("", hour, tenHours))          // never finishes
		late := create(retained("", hour, tenHours))             // complete at t0+3h: due at t0+4h
		retried := create(retained("", hour, tenHours))          // error, then retried: not finished
		cancelled := create(retained("", dur(2*time.Hour), nil)) // cancelled at t0: due at t0+2h
		moveTask(t, st, done, taskertype.TaskStatePending, taskertype.TaskStateComplete, t0)
		moveTask(t, st, failed, taskertype.TaskStatePending, taskertype.TaskStateError, t0)
		moveTask(t, st, forever, taskertype.TaskStatePending, taskertype.TaskStateComplete, t0)
		moveTask(t, st, running, taskertype.TaskStatePending, taskertype.TaskStateInProgress, t0)
		moveTask(t, st, late, taskertype.TaskStatePending, taskertype.TaskStateComplete, t0.Add(3*time.Hour))
		moveTask(t, st, retried, taskertype.TaskStatePending, taskertype.TaskStateError, t0)
		moveTask(t, st, retried, taskertype.TaskStateError, taskertype.TaskStatePending, t0.Add(time.Minute))
		moveTask(t, st, cancelled, taskertype.TaskStatePending, taskertype.TaskStateCancelled, t0)

		for id, want := range map[int64]*time.Time{done: new(t0.Add(time.Hour)), failed: new(t0.Add(10 * time.Hour)),
			forever: nil, running: nil, late: new(t0.Add(4 * time.Hour)), retried: nil,
			cancelled: new(t0.Add(2 * time.Hour))} {
			task, err := st.TaskGet(ctx, id)
			require.NoError(t, err)
			if want == nil {
				require.Nil(t, task.KeepUntil, "task %d", id)
			} else {
				require.NotNil(t, task.KeepUntil, "task %d", id)
				require.True(t, want.Equal(*task.KeepUntil), "task %d: keep until %v, want %v", id, task.KeepUntil, want)
			}
		}
		task, err := st.TaskGet(ctx, done)
		require.NoError(t, err)
		require.Equal(t, int64(3600), *task.RetentionSeconds)
		require.Equal(t, int64(36000), *task.RetentionFailedSeconds)
		task, err = st.TaskGet(ctx, forever)
		require.NoError(t, err)
		require.Nil(t, task.RetentionSeconds)
		require.Nil(t, task.RetentionFailedSeconds)
		for _, table := range taskTables {
			require.Positive(t, taskRows(t, st, done)[table], "%s has rows of the task before pruning", table)
		}

		at := func(d time.Duration) *store.TaskPruneParams {
			return &store.TaskPruneParams{Now: t0.Add(d), Limit: 100}
		}
		n, err := st.TaskPruneCount(ctx, at(time.Hour-time.Microsecond))
		require.NoError(t, err)
		require.Zero(t, n, "nothing is due before the first keep_until")
		n, err = st.TaskPruneCount(ctx, at(time.Hour))
		require.NoError(t, err)
		require.Equal(t, 1, n, "due at its keep_until")
		res, err := st.TaskPrune(ctx, at(2*time.Hour+time.Minute))
		require.NoError(t, err)
		require.Equal(t, &store.TaskPruneResult{Deleted: 2}, res)
		for _, id := range []int64{done, cancelled} {
			_, err = st.TaskGet(ctx, id)
			require.True(t, errors.Is(err, taskertype.ErrNotFound), "task %d: %v", id, err)
			for table, rows := range taskRows(t, st, id) {
				require.Zero(t, rows, "%s keeps rows of pruned task %d", table, id)
			}
		}
		again, err := st.TaskCreate(ctx, retained("k-done", hour, tenHours))
		require.NoError(t, err)
		require.True(t, again.Created, "the pruned task's idempotency key is free")

		// Bounded: late (due t0+4h) goes before failed (due t0+10h).
		res, err = st.TaskPrune(ctx, &store.TaskPruneParams{Now: t0.Add(11 * time.Hour), Limit: 1})
		require.NoError(t, err)
		require.Equal(t, 1, res.Deleted)
		_, err = st.TaskGet(ctx, late)
		require.True(t, errors.Is(err, taskertype.ErrNotFound), "the oldest due first: %v", err)
		res, err = st.TaskPrune(ctx, &store.TaskPruneParams{Now: t0.Add(11 * time.Hour), Limit: 1})
		require.NoError(t, err)
		require.Equal(t, 1, res.Deleted)
		res, err = st.TaskPrune(ctx, &store.TaskPruneParams{Now: t0.Add(11 * time.Hour), Limit: 1})
		require.NoError(t, err)
		require.Zero(t, res.Deleted)
		for _, id := range []int64{forever, running, retried, again.Task.ID} {
			_, err = st.TaskGet(ctx, id)
			require.NoError(t, err, "task %d is kept", id)
		}
		// Retention aside: every task finished before the given time.
		older := &store.TaskPruneParams{FinishedBefore: new(t0.Add(time.Second)), Limit: 10}
		n, err = st.TaskPruneCount(ctx, older)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		res, err = st.TaskPrune(ctx, older)
		require.NoError(t, err)
		require.Equal(t, 1, res.Deleted)
		_, err = st.TaskGet(ctx, forever)
		require.True(t, errors.Is(err, taskertype.ErrNotFound), "--older-than prunes a task kept for ever: %v", err)
		for table, rows := range taskRows(t, st, forever) {
			require.Zero(t, rows, "%s keeps rows of pruned task %d", table, forever)
		}
		for _, id := range []int64{running, retried, again.Task.ID} {
			_, err = st.TaskGet(ctx, id)
			require.NoError(t, err, "unfinished task %d is kept", id)
			require.Positive(t, taskRows(t, st, id)["tasker_workflow_steps"])
		}
		_, err = st.TaskPrune(ctx, &store.TaskPruneParams{Now: t0, Limit: 0})
		require.Error(t, err, "a limit under 1")
	})

	// Pruners running at once (one pool's connections on PostgreSQL: real
	// concurrent transactions) delete every due task exactly once, without
	// errors; a pruner that finds another one deleting reports Busy.
	t.Run("ConcurrentPrunersDeleteEachTaskOnce", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		const tasks = 60
		ps := make([]*store.TaskCreateParams, tasks)
		for i := range ps {
			ps[i] = retained("", dur(time.Minute), dur(time.Minute))
		}
		res, err := st.TaskCreateMany(ctx, ps)
		require.NoError(t, err)
		for _, r := range res {
			moveTask(t, st, r.Task.ID, taskertype.TaskStatePending, taskertype.TaskStateComplete, t0)
		}
		var deleted, busy atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for range 4 {
			wg.Go(func() {
				for {
					r, err := st.TaskPrune(ctx, &store.TaskPruneParams{Now: t0.Add(time.Hour), Limit: 5})
					if err != nil {
						errs <- err
						return
					}
					if r.Busy {
						busy.Add(1)
						continue
					}
					if r.Deleted == 0 {
						return
					}
					deleted.Add(int64(r.Deleted))
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		require.Equal(t, int64(tasks), deleted.Load(), "every due task deleted once (%d busy rounds)", busy.Load())
		n, err := st.TaskPruneCount(ctx, &store.TaskPruneParams{Now: t0.Add(time.Hour)})
		require.NoError(t, err)
		require.Zero(t, n)
	})
}

// BenchTaskPrune measures pruning: each op deletes one batch of 500 due
// tasks of 12 steps (a root, ten leaves, a join: 12 steps, 20 edges, 14
// transitions, a queue record each) in one TaskPrune call; the tasks are
// created and finished outside the timer. It reports tasks/s.
func BenchTaskPrune(b *testing.B, st store.Store) {
	ctx := context.Background()
	const batch = 500
	keep := time.Minute
	ps := make([]*store.TaskCreateParams, batch)
	for i := range ps {
		ps[i] = FanOut(10, "")
		ps[i].Now, ps[i].Retention, ps[i].RetentionFailed = t0, &keep, &keep
	}
	var deleted int
	var took time.Duration
	for range b.N {
		res, err := st.TaskCreateMany(ctx, ps)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range res {
			if _, err := st.TaskTransition(ctx, &store.TaskTransitionParams{TaskID: r.Task.ID,
				From: []taskertype.TaskState{taskertype.TaskStatePending}, To: taskertype.TaskStateComplete,
				Event: "bench", Now: t0}); err != nil {
				b.Fatal(err)
			}
		}
		start := time.Now()
		p, err := st.TaskPrune(ctx, &store.TaskPruneParams{Now: t0.Add(time.Hour), Limit: batch})
		took += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if p.Deleted != batch {
			b.Fatalf("pruned %d of %d", p.Deleted, batch)
		}
		deleted += p.Deleted
	}
	b.ReportMetric(float64(deleted)/took.Seconds(), "tasks/s")
	b.ReportMetric(float64(took.Microseconds())/float64(b.N), "µs/batch")
}
