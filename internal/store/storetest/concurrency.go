package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/taskertype"
)

// keyed is a one-step task with concurrency key key (limit, policy).
func keyed(key string, limit int, policy string) *store.TaskCreateParams {
	p := &store.TaskCreateParams{
		Namespace: "ns", Name: "keyed", Version: "1.0.0", Context: []byte(`{}`), MaxParallelSteps: 1,
		Steps: []store.StepSpec{{Name: "a", HandlerClass: "h", Retryable: true, MaxAttempts: 3}},
		Actor: "test", Now: t0, Queue: store.QueueOp{Kind: store.QueueUpsert, Operation: "enqueue", RunAt: t0},
	}
	if key != "" {
		p.Concurrency = &store.TaskConcurrency{Key: key, Limit: limit, Policy: policy}
	}
	return p
}

// admitParams is the admission the engine makes for task id at now.
func admitParams(id int64, now time.Time) *store.TaskAdmitParams {
	pending := []taskertype.TaskState{taskertype.TaskStatePending, taskertype.TaskStateWaitingForRetry}
	return &store.TaskAdmitParams{
		TaskID: id,
		Start: &store.TaskTransitionParams{TaskID: id, From: pending, To: taskertype.TaskStateInProgress, Event: "start",
			Actor: "r", Now: now},
		Park: store.QueueOp{Kind: store.QueueUpsert, Operation: "reenqueue", RunAt: now.Add(time.Hour)},
		Cancel: &store.StepTransitionParams{
			From: []taskertype.StepState{taskertype.StepStatePending, taskertype.StepStateInProgress,
				taskertype.StepStateWaitingForRetry},
			To: taskertype.StepStateCancelled, Event: "cancel", Actor: "r", Now: now,
			Task: &store.TaskTransitionParams{From: []taskertype.TaskState{taskertype.TaskStatePending,
				taskertype.TaskStateInProgress, taskertype.TaskStateWaitingForRetry}, To: taskertype.TaskStateCancelled,
				Event: "cancel", Actor: "r", Now: now, Queue: store.QueueOp{Kind: store.QueueDelete}}},
	}
}

// exerciseConcurrency is the conformance of concurrency keys (TaskAdmit,
// TaskConcurrency and the wake of a parked task).
func exerciseConcurrency(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	create := func(t *testing.T, st store.Store, p *store.TaskCreateParams) int64 {
		t.Helper()
		res, err := st.TaskCreate(ctx, p)
		require.NoError(t, err)
		return res.Task.ID
	}
	queueRunAt := func(t *testing.T, st store.Store, id int64) time.Time {
		t.Helper()
		q, err := st.QueueList(ctx, 100)
		require.NoError(t, err)
		for _, e := range q {
			if e.TaskID == id {
				return e.RunAt
			}
		}
		t.Fatalf("task %d has no queue record", id)
		return time.Time{}
	}

	// Under the limit a task starts; at it the next is parked (pending, its
	// queue record due later, with its priority); when a running task of the
	// key finishes, the parked one is due at the finish's time; a task
	// without a key is left alone.
	t.Run("ConcurrencyAdmitParksAndWakes", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		a := create(t, st, keyed("acct-1", 1, "queue"))
		bp := keyed("acct-1", 1, "queue")
		bp.Priority = 3
		b := create(t, st, bp)
		free := create(t, st, keyed("", 0, ""))

		res, err := st.TaskAdmit(ctx, admitParams(free, t0))
		require.NoError(t, err)
		require.Equal(t, store.AdmitFree, res.Outcome)
		require.Equal(t, taskertype.TaskStatePending, res.State)
		cs, err := st.TaskConcurrency(ctx, free)
		require.NoError(t, err)
		require.Nil(t, cs)

		res, err = st.TaskAdmit(ctx, admitParams(a, t0))
		require.NoError(t, err)
		require.Equal(t, store.AdmitStarted, res.Outcome)
		require.Equal(t, taskertype.TaskStateInProgress, res.State)
		require.True(t, res.Start.Changed)
		require.Equal(t, 0, res.Concurrency.Running)

		res, err = st.TaskAdmit(ctx, admitParams(b, t0.Add(time.Second)))
		require.NoError(t, err)
		require.Equal(t, store.AdmitParked, res.Outcome)
		require.Equal(t, taskertype.TaskStatePending, res.State)
		require.Equal(t, store.ConcurrencyState{TaskConcurrency: store.TaskConcurrency{Key: "acct-1", Limit: 1, Policy: "queue"},
			Running: 1}, *res.Concurrency)
		require.True(t, queueRunAt(t, st, b).Equal(t0.Add(time.Second+time.Hour)))
		q, err := st.QueueList(ctx, 100)
		require.NoError(t, err)
		for _, e := range q {
			if e.TaskID == b {
				require.Equal(t, 3, e.Priority, "the parked record keeps the task's priority")
			}
		}
		cs, err = st.TaskConcurrency(ctx, b)
		require.NoError(t, err)
		require.Equal(t, 1, cs.Running)

		// Admitting a task already started does nothing.
		res, err = st.TaskAdmit(ctx, admitParams(a, t0))
		require.NoError(t, err)
		require.Equal(t, store.AdmitFree, res.Outcome)

		// a waits for a retry (still running: b stays parked), then completes.
		_, err = st.TaskTransition(ctx, &store.TaskTransitionParams{TaskID: a, From: []taskertype.TaskState{taskertype.TaskStateInProgress},
			To: taskertype.TaskStateWaitingForRetry, Event: "wait", Now: t0.Add(2 * time.Second)})
		require.NoError(t, err)
		require.True(t, queueRunAt(t, st, b).Equal(t0.Add(time.Second+time.Hour)))
		_, err = st.TaskTransition(ctx, &store.TaskTransitionParams{TaskID: a, From: []taskertype.TaskState{taskertype.TaskStateWaitingForRetry},
			To: taskertype.TaskStateInProgress, Event: "start", Now: t0.Add(3 * time.Second)})
		require.NoError(t, err)
		finish := t0.Add(4 * time.Second)
		_, err = st.TaskTransition(ctx, &store.TaskTransitionParams{TaskID: a, From: []taskertype.TaskState{taskertype.TaskStateInProgress},
			To: taskertype.TaskStateComplete, Event: "complete", Now: finish, Queue: store.QueueOp{Kind: store.QueueDelete}})
		require.NoError(t, err)
		require.True(t, queueRunAt(t, st, b).Equal(finish), "the finish made the parked task due: %s", queueRunAt(t, st, b))

		res, err = st.TaskAdmit(ctx, admitParams(b, finish))
		require.NoError(t, err)
		require.Equal(t, store.AdmitStarted, res.Outcome)
	})

	// A delayed task of the key (its run_at still ahead) is not a parked
	// one: a finish of the key leaves its queue record at its run_at, and
	// wakes the parked task behind it instead.
	t.Run("ConcurrencyWakeSkipsDelayedTask", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		a := create(t, st, keyed("acct-2", 1, "queue"))
		due := t0.Add(time.Hour)
		dp := keyed("acct-2", 1, "queue")
		dp.RunAt, dp.Queue.RunAt = &due, due
		delayed := create(t, st, dp)
		b := create(t, st, keyed("acct-2", 1, "queue"))
		res, err := st.TaskAdmit(ctx, admitParams(a, t0))
		require.NoError(t, err)
		require.Equal(t, store.AdmitStarted, res.Outcome)
		res, err = st.TaskAdmit(ctx, admitParams(b, t0.Add(time.Second)))
		require.NoError(t, err)
		require.Equal(t, store.AdmitParked, res.Outcome)

		finish := t0.Add(2 * time.Second)
		_, err = st.TaskTransition(ctx, &store.TaskTransitionParams{TaskID: a, From: []taskertype.TaskState{taskertype.TaskStateInProgress},
			To: taskertype.TaskStateComplete, Event: "complete", Now: finish, Queue: store.QueueOp{Kind: store.QueueDelete}})
		require.NoError(t, err)
		require.True(t, queueRunAt(t, st, delayed).Equal(due), "the delayed task stays due at its run_at: %s", queueRunAt(t, st, delayed))
		require.True(t, queueRunAt(t, st, b).Equal(finish), "the parked task was woken: %s", queueRunAt(t, st, b))
	})

	// cancel_newest cancels the task with its steps; cancel_oldest cancels
	// the oldest running task of the key and starts the new one, in one
	// transaction.
	t.Run("ConcurrencyAdmitCancelPolicies", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		a := create(t, st, keyed("k", 1, "cancel_newest"))
		b := create(t, st, keyed("k", 1, "cancel_newest"))
		res, err := st.TaskAdmit(ctx, admitParams(a, t0))
		require.NoError(t, err)
		require.Equal(t, store.AdmitStarted, res.Outcome)
		res, err = st.TaskAdmit(ctx, admitParams(b, t0))
		require.NoError(t, err)
		require.Equal(t, store.AdmitCancelledNewest, res.Outcome)
		require.Equal(t, taskertype.TaskStateCancelled, res.State)
		require.Len(t, res.Cancelled, 1)
		require.Equal(t, b, res.Cancelled[0].TaskID)
		require.Len(t, res.Cancelled[0].Steps, 1)
		require.Contains(t, res.Reason, "concurrency key k at limit 1 (policy cancel_newest)")
		task, err := st.TaskGet(ctx, b)
		require.NoError(t, err)
		require.Equal(t, taskertype.TaskStateCancelled, task.State)

		c := create(t, st, keyed("o", 2, "cancel_oldest"))
		d := create(t, st, keyed("o", 2, "cancel_oldest"))
		e := create(t, st, keyed("o", 2, "cancel_oldest"))
		for _, id := range []int64{c, d} {
			res, err = st.TaskAdmit(ctx, admitParams(id, t0))
			require.NoError(t, err)
			require.Equal(t, store.AdmitStarted, res.Outcome)
		}
		claim(t, st, c, "r", t0, 1) // c's step runs: it is cancelled too
		later := t0.Add(time.Minute)
		p := admitParams(e, t0)
		p.Clock = func() time.Time { return later }
		res, err = st.TaskAdmit(ctx, p)
		require.NoError(t, err)
		require.Equal(t, store.AdmitReplacedOldest, res.Outcome)
		require.Equal(t, taskertype.TaskStateInProgress, res.State)
		require.Len(t, res.Cancelled, 1)
		require.Equal(t, c, res.Cancelled[0].TaskID)
		require.Contains(t, res.Reason, "cancelled to make room for task")
		steps, err := st.StepList(ctx, c)
		require.NoError(t, err)
		require.Equal(t, taskertype.StepStateCancelled, steps[0].State)
		// The clock read under the lock stamps both the cancel and the start.
		trs, err := st.TaskTransitions(ctx, c)
		require.NoError(t, err)
		require.True(t, trs[len(trs)-1].CreatedAt.Equal(later))
		trs, err = st.TaskTransitions(ctx, e)
		require.NoError(t, err)
		require.True(t, trs[len(trs)-1].CreatedAt.Equal(later))
		cs, err := st.TaskConcurrency(ctx, e)
		require.NoError(t, err)
		require.Equal(t, 2, cs.Running)
	})
}
