package storetest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/store/sqlcore"
	"github.com/tasker-systems/tasker/taskertype"
)

// exerciseQueueRowMigration checks that migration 0021 (the enqueue record
// moved into the task's row) keeps every record, lease and attempt count
// down and up again.
func exerciseQueueRowMigration(t *testing.T, newStore NewStore) {
	t.Run("QueueRecordsSurviveMigration0021DownAndUp", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		st := newStore(t)
		db, ok := st.(interface{ DB() sqlcore.Database })
		require.True(t, ok, "the store has no DB()")
		leased, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		waiting, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		now := t0.Add(time.Second)
		got, err := st.QueueClaim(ctx, &store.QueueClaimParams{Owner: "o", Limit: 1, Now: now, LeaseUntil: now.Add(time.Minute)})
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, leased.Task.ID, got[0].TaskID)
		before, err := st.QueueList(ctx, 10)
		require.NoError(t, err)
		require.Len(t, before, 2)

		status, err := st.MigrationStatus(ctx)
		require.NoError(t, err)
		steps := 0
		for _, m := range status {
			if m.Applied && m.Version >= 21 {
				steps++
			}
		}
		_, err = st.MigrateDown(ctx, steps)
		require.NoError(t, err)
		var n, leases int
		require.NoError(t, db.DB().QueryRow(ctx, `SELECT count(*), count(lease_owner) FROM tasker_task_queue
			WHERE task_id IN ($1, $2)`, leased.Task.ID, waiting.Task.ID).Scan(&n, &leases))
		require.Equal(t, 2, n, "records in tasker_task_queue after 0021 down")
		require.Equal(t, 1, leases, "leases in tasker_task_queue after 0021 down")

		_, err = st.MigrateUp(ctx, 0)
		require.NoError(t, err)
		after, err := st.QueueList(ctx, 10)
		require.NoError(t, err)
		require.Len(t, after, 2)
		byID := func(a, b *store.QueueEntry) int { return cmp.Compare(a.TaskID, b.TaskID) }
		slices.SortFunc(before, byID)
		slices.SortFunc(after, byID)
		for i := range before {
			b, a := before[i], after[i]
			require.Equal(t, b.TaskID, a.TaskID)
			require.Equal(t, b.Operation, a.Operation)
			require.True(t, b.RunAt.Equal(a.RunAt), "run_at %s, then %s", b.RunAt, a.RunAt)
			require.Equal(t, b.Attempts, a.Attempts)
			require.Equal(t, b.LeaseOwner, a.LeaseOwner)
			require.Equal(t, b.LeaseExpiresAt == nil, a.LeaseExpiresAt == nil)
		}
		// The lease still holds, and the other record is still due.
		got, err = st.QueueClaim(ctx, &store.QueueClaimParams{Owner: "p", Limit: 2, Now: now, LeaseUntil: now.Add(time.Minute)})
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Equal(t, waiting.Task.ID, got[0].TaskID)
		require.NoError(t, st.QueueAck(ctx, leased.Task.ID, "p"), "an ack by another owner is a no-op")
		require.NoError(t, st.QueueAck(ctx, leased.Task.ID, "o"))
		left, err := st.QueueList(ctx, 10)
		require.NoError(t, err)
		require.Len(t, left, 1)
		require.Equal(t, waiting.Task.ID, left[0].TaskID)
	})

	t.Run("QueueClaimMayStartTasks", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		st := newStore(t)
		create := func(key string, limit int) int64 {
			p := diamond("")
			if key != "" {
				p.Concurrency = &store.TaskConcurrency{Key: key, Limit: limit, Policy: "queue"}
			}
			res, err := st.TaskCreate(ctx, p)
			require.NoError(t, err)
			return res.Task.ID
		}
		plain := create("", 0)
		k1a, _ := create("k1", 1), create("k1", 1)   // room for the first only
		k2a, k2b := create("k2", 2), create("k2", 2) // room for both
		busy, _ := create("k3", 1), create("k3", 1)  // busy runs: no room
		tr, err := st.TaskTransition(ctx, &store.TaskTransitionParams{TaskID: busy,
			From: []taskertype.TaskState{taskertype.TaskStatePending}, To: taskertype.TaskStateInProgress,
			Event: "start", Now: t0})
		require.NoError(t, err)
		require.True(t, tr.Changed)
		now := t0.Add(time.Second)
		got, err := st.QueueClaim(ctx, &store.QueueClaimParams{Owner: "o", Limit: 10, Now: now,
			LeaseUntil: now.Add(time.Minute), Start: true, StartReason: "coordinator started"})
		require.NoError(t, err)
		require.Len(t, got, 7)
		var started []int64
		for _, e := range got {
			require.Equal(t, "o", e.LeaseOwner)
			if e.Started != nil {
				started = append(started, e.TaskID)
			}
		}
		slices.Sort(started)
		if len(started) == 0 {
			t.Log("this store's claim starts no task (allowed by QueueClaimParams.Start)")
		} else {
			require.Equal(t, []int64{plain, k1a, k2a, k2b}, started,
				"started: the task without a key, and those with one their key had room for")
		}
		for _, e := range got {
			task, err := st.TaskGet(ctx, e.TaskID)
			require.NoError(t, err)
			trs, err := st.TaskTransitions(ctx, e.TaskID)
			require.NoError(t, err)
			if e.Started == nil {
				if e.TaskID == busy {
					require.Equal(t, taskertype.TaskStateInProgress, task.State)
					continue
				}
				require.Equal(t, taskertype.TaskStatePending, task.State, "task %d", e.TaskID)
				require.Len(t, trs, 1)
				continue
			}
			require.Equal(t, taskertype.TaskStateInProgress, task.State)
			require.Equal(t, &store.TransitionResult{Changed: true, State: taskertype.TaskStateInProgress,
				From: taskertype.TaskStatePending, Seq: 2}, e.Started.Transition)
			require.Equal(t, task, e.Started.Task, "the started task as TaskGet reads it")
			if e.TaskID == plain {
				require.True(t, task.UpdatedAt.Equal(now), "updated_at %s", task.UpdatedAt)
			} else { // stamped after its key's admission: the claim's Now and the time since
				require.False(t, task.UpdatedAt.Before(now), "updated_at %s before %s", task.UpdatedAt, now)
				require.Less(t, task.UpdatedAt.Sub(now), time.Minute, "updated_at %s", task.UpdatedAt)
			}
			require.Len(t, trs, 2)
			last := trs[len(trs)-1]
			require.Equal(t, "pending", last.FromState)
			require.Equal(t, "in_progress", last.ToState)
			require.Equal(t, "start", last.Event)
			require.Equal(t, "o", last.Actor)
			require.Equal(t, "coordinator started", last.Reason)
			require.Equal(t, 2, last.SortKey)
			require.True(t, last.CreatedAt.Equal(task.UpdatedAt), "the transition at %s, the task's update at %s",
				last.CreatedAt, task.UpdatedAt)
			// A coordinator's start finds it started: no second transition.
			tr, err := st.TaskTransition(ctx, &store.TaskTransitionParams{TaskID: e.TaskID,
				From: []taskertype.TaskState{taskertype.TaskStatePending, taskertype.TaskStateWaitingForRetry},
				To:   taskertype.TaskStateInProgress, Event: "start", Now: now})
			require.NoError(t, err)
			require.False(t, tr.Changed)
		}
	})

	t.Run("ConcurrentQueueClaimsNeverExceedAKeysLimit", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		st := newStore(t)
		const tasks, limit, claimers = 24, 3, 8
		for range tasks {
			p := diamond("")
			p.Concurrency = &store.TaskConcurrency{Key: "hot", Limit: limit, Policy: "queue"}
			_, err := st.TaskCreate(ctx, p)
			require.NoError(t, err)
		}
		now := t0.Add(time.Second)
		var mu sync.Mutex
		claimed, started := 0, 0
		before := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, claimers)
		for i := range claimers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					got, err := st.QueueClaim(ctx, &store.QueueClaimParams{Owner: fmt.Sprintf("o%d", i), Limit: 2,
						Now: now, LeaseUntil: now.Add(time.Minute), Start: true, StartReason: "coordinator started",
						DatabaseClock: true})
					if err != nil {
						errs <- err
						return
					}
					if len(got) == 0 {
						return
					}
					mu.Lock()
					claimed += len(got)
					for _, e := range got {
						if e.Started != nil {
							started++
						}
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		require.Equal(t, tasks, claimed, "every record claimed once")
		list, err := st.TaskList(ctx, &store.TaskListParams{Limit: 100})
		require.NoError(t, err)
		after := time.Now()
		running := 0
		for _, task := range list {
			if task.State == taskertype.TaskStateInProgress {
				running++
				// Stamped by the database's clock (DatabaseClock), the test's
				// own on this machine: not at the claim's (fake) Now.
				require.True(t, task.UpdatedAt.After(before.Add(-time.Second)) && task.UpdatedAt.Before(after.Add(time.Second)),
					"task %d started at %s, not between %s and %s", task.ID, task.UpdatedAt, before, after)
			}
		}
		require.Equal(t, started, running, "the claims report the starts they made")
		if started > 0 { // a store whose claim starts tasks fills the key, no more
			require.Equal(t, limit, started)
		}
	})

	t.Run("QueueViewWritesGoToTheTaskRow", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		st := newStore(t)
		db, ok := st.(interface{ DB() sqlcore.Database })
		require.True(t, ok, "the store has no DB()")
		res, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		id := res.Task.ID
		_, err = db.DB().Exec(ctx, `UPDATE tasker_task_queue SET lease_owner = 'x', reason = 'r' WHERE task_id = $1`, id)
		require.NoError(t, err)
		list, err := st.QueueList(ctx, 10)
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.Equal(t, "x", list[0].LeaseOwner)
		require.Equal(t, "r", list[0].Reason)
		_, err = db.DB().Exec(ctx, `DELETE FROM tasker_task_queue WHERE task_id = $1`, id)
		require.NoError(t, err)
		list, err = st.QueueList(ctx, 10)
		require.NoError(t, err)
		require.Empty(t, list)
		_, err = st.TaskGet(ctx, id)
		require.NoError(t, err, "a delete through the view clears the record, never the task")
		_, err = db.DB().Exec(ctx, `INSERT INTO tasker_task_queue (task_id, operation, run_at, created_at, updated_at)
			SELECT task_id, 'enqueue', created_at, created_at, created_at FROM tasker_tasks WHERE task_id = $1`, id)
		require.NoError(t, err)
		list, err = st.QueueList(ctx, 10)
		require.NoError(t, err)
		require.Len(t, list, 1)
		require.Equal(t, id, list[0].TaskID)
		require.Equal(t, "enqueue", list[0].Operation)
	})
}
