package storetest

import (
	"cmp"
	"context"
	"slices"
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
		plain, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		keyed := diamond("")
		keyed.Concurrency = &store.TaskConcurrency{Key: "k", Limit: 1, Policy: "queue"}
		withKey, err := st.TaskCreate(ctx, keyed)
		require.NoError(t, err)
		now := t0.Add(time.Second)
		got, err := st.QueueClaim(ctx, &store.QueueClaimParams{Owner: "o", Limit: 10, Now: now,
			LeaseUntil: now.Add(time.Minute), Start: true, StartReason: "coordinator started"})
		require.NoError(t, err)
		require.Len(t, got, 2)
		for _, e := range got {
			task, err := st.TaskGet(ctx, e.TaskID)
			require.NoError(t, err)
			trs, err := st.TaskTransitions(ctx, e.TaskID)
			require.NoError(t, err)
			require.Equal(t, "o", e.LeaseOwner)
			if e.TaskID == withKey.Task.ID {
				require.Nil(t, e.Started, "a task with a concurrency key is started by admission only")
			}
			if e.Started == nil {
				require.Equal(t, taskertype.TaskStatePending, task.State)
				require.Len(t, trs, 1)
				continue
			}
			require.Equal(t, plain.Task.ID, e.TaskID)
			require.Equal(t, taskertype.TaskStateInProgress, task.State)
			require.Equal(t, &store.TransitionResult{Changed: true, State: taskertype.TaskStateInProgress,
				From: taskertype.TaskStatePending, Seq: 2}, e.Started.Transition)
			require.Equal(t, task, e.Started.Task, "the started task as TaskGet reads it")
			require.True(t, task.UpdatedAt.Equal(now), "updated_at %s", task.UpdatedAt)
			require.Len(t, trs, 2)
			last := trs[len(trs)-1]
			require.Equal(t, "pending", last.FromState)
			require.Equal(t, "in_progress", last.ToState)
			require.Equal(t, "start", last.Event)
			require.Equal(t, "o", last.Actor)
			require.Equal(t, "coordinator started", last.Reason)
			require.Equal(t, 2, last.SortKey)
			// A coordinator's start finds it started: no second transition.
			tr, err := st.TaskTransition(ctx, &store.TaskTransitionParams{TaskID: e.TaskID,
				From: []taskertype.TaskState{taskertype.TaskStatePending, taskertype.TaskStateWaitingForRetry},
				To:   taskertype.TaskStateInProgress, Event: "start", Now: now})
			require.NoError(t, err)
			require.False(t, tr.Changed)
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
