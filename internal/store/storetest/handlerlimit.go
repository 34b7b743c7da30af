package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/taskertype"
)

// exerciseHandlerLimits checks store.HandlerLimiter: admission grants at
// most the limit's free slots, in order, also when many admit at once; a
// step gives its slot back by leaving in_progress on any path (a result,
// the rescuer); a freed slot makes the oldest step waiting for one due.
func exerciseHandlerLimits(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	limiter := func(t *testing.T) (store.Store, store.HandlerLimiter) {
		st := newStore(t)
		hl, ok := st.(store.HandlerLimiter)
		require.True(t, ok, "the store keeps handler-class limits")
		return st, hl
	}
	// one creates n single-step tasks of class and claims their steps for
	// owner; it returns the claimed steps in task order.
	one := func(t *testing.T, st store.Store, class, owner string, n int) []*store.ClaimedStep {
		var out []*store.ClaimedStep
		for i := range n {
			res, err := st.TaskCreate(ctx, &store.TaskCreateParams{Namespace: "ns", Name: "pay", Version: "1.0.0",
				Context: []byte(`{}`), Initiator: "test", Reason: "conformance", MaxParallelSteps: 1,
				IdempotencyKey: "", Steps: []store.StepSpec{{Name: "charge", HandlerClass: class, Retryable: true, MaxAttempts: 3}},
				Actor: "test", Now: t0, Queue: store.QueueOp{Kind: store.QueueUpsert, Operation: "enqueue", RunAt: t0}})
			require.NoError(t, err)
			cs := claim(t, st, res.Task.ID, owner, t0, 1)
			require.Len(t, cs, 1, "task %d", i)
			out = append(out, cs[0])
		}
		return out
	}
	ids := func(cs ...*store.ClaimedStep) []int64 {
		out := make([]int64, len(cs))
		for i, c := range cs {
			out[i] = c.Step.ID
		}
		return out
	}
	running := func(t *testing.T, hl store.HandlerLimiter, class string) int {
		t.Helper()
		m, err := hl.HandlerRunning(ctx, []string{class, "other"})
		require.NoError(t, err)
		return m[class]
	}

	t.Run("HandlerAdmitGrantsTheFreeSlotsInOrder", func(t *testing.T) {
		t.Parallel()
		st, hl := limiter(t)
		cs := one(t, st, "Pay", "w", 4)
		res, err := hl.HandlerAdmit(ctx, &store.HandlerAdmitParams{Class: "Pay", Limit: 2, Owner: "w", StepIDs: ids(cs[:3]...)})
		require.NoError(t, err)
		require.Equal(t, map[int64]bool{cs[0].Step.ID: true, cs[1].Step.ID: true}, res.Granted)
		require.Equal(t, 0, res.Running)
		require.Equal(t, 2, running(t, hl, "Pay"))

		res, err = hl.HandlerAdmit(ctx, &store.HandlerAdmitParams{Class: "Pay", Limit: 2, Owner: "w", StepIDs: ids(cs[3])})
		require.NoError(t, err)
		require.Empty(t, res.Granted)
		require.Equal(t, 2, res.Running)
		// Another owner's step, or another class, is not admitted.
		res, err = hl.HandlerAdmit(ctx, &store.HandlerAdmitParams{Class: "Pay", Limit: 9, Owner: "x", StepIDs: ids(cs[3])})
		require.NoError(t, err)
		require.Empty(t, res.Granted)

		// A recorded result gives the slot back.
		succeed(t, st, cs[0].Step.TaskID, "w", t0.Add(time.Second), cs[0])
		require.Equal(t, 1, running(t, hl, "Pay"))
		res, err = hl.HandlerAdmit(ctx, &store.HandlerAdmitParams{Class: "Pay", Limit: 2, Owner: "w", StepIDs: ids(cs[3])})
		require.NoError(t, err)
		require.Equal(t, map[int64]bool{cs[3].Step.ID: true}, res.Granted)
		require.Equal(t, 1, res.Running)
		// A raised limit grants more at once; a step admitted twice holds one slot.
		res, err = hl.HandlerAdmit(ctx, &store.HandlerAdmitParams{Class: "Pay", Limit: 3, Owner: "w", StepIDs: ids(cs[2], cs[3])})
		require.NoError(t, err)
		require.Len(t, res.Granted, 2)
		require.Equal(t, 1, res.Running)
		require.Equal(t, 3, running(t, hl, "Pay"))
	})

	t.Run("HandlerSlotFreedByTheRescuerAndWakesAWaiter", func(t *testing.T) {
		t.Parallel()
		st, hl := limiter(t)
		cs := one(t, st, "Pay", "dead", 1)
		cs = append(cs, one(t, st, "Pay", "w", 1)...)
		res, err := hl.HandlerAdmit(ctx, &store.HandlerAdmitParams{Class: "Pay", Limit: 1, Owner: "dead", StepIDs: ids(cs[0])})
		require.NoError(t, err)
		require.Len(t, res.Granted, 1)
		res, err = hl.HandlerAdmit(ctx, &store.HandlerAdmitParams{Class: "Pay", Limit: 1, Owner: "w", StepIDs: ids(cs[1])})
		require.NoError(t, err)
		require.Empty(t, res.Granted)
		// The refused step waits (throttled, its attempt given back) and
		// its task is re-enqueued for an hour from now.
		later := t0.Add(time.Hour)
		wait := t0.Add(time.Second)
		wt, err := st.StepTransition(ctx, &store.StepTransitionParams{TaskID: cs[1].Step.TaskID, StepIDs: ids(cs[1]),
			From: []taskertype.StepState{taskertype.StepStateInProgress}, To: taskertype.StepStateWaitingForRetry,
			Event: "throttle", Reason: "handler class Pay at limit 1 (1 running)", Actor: "w", Now: wait, NextRetryAt: &later,
			Queue: store.QueueOp{Kind: store.QueueUpsert, Operation: "reenqueue", RunAt: later}})
		require.NoError(t, err)
		require.Len(t, wt.Moved, 1)
		// The dead runner's step is rescued: its slot is free, and the
		// waiting step and its task are due at the rescue's time.
		rescue := t0.Add(2 * time.Minute)
		moved, err := st.StepTransition(ctx, &store.StepTransitionParams{TaskID: cs[0].Step.TaskID, StepIDs: ids(cs[0]),
			From: []taskertype.StepState{taskertype.StepStateInProgress}, To: taskertype.StepStateWaitingForRetry,
			Event: "fail_retryable", Reason: "lease expired", Actor: "rescuer", Now: rescue, RequireLeaseExpiredBefore: &rescue})
		require.NoError(t, err)
		require.Len(t, moved.Moved, 1)
		require.Equal(t, 0, running(t, hl, "Pay"))
		steps, err := st.StepList(ctx, cs[1].Step.TaskID)
		require.NoError(t, err)
		require.NotNil(t, steps[0].NextRetryAt)
		require.True(t, steps[0].NextRetryAt.Equal(rescue), "woken step due at %v", steps[0].NextRetryAt)
		q, err := st.QueueList(ctx, 100)
		require.NoError(t, err)
		found := false
		for _, e := range q {
			if e.TaskID == cs[1].Step.TaskID {
				found = true
				require.True(t, e.RunAt.Equal(rescue), "woken task due at %v", e.RunAt)
			}
		}
		require.True(t, found, "the waiting task is queued")
		// It is claimed and admitted again.
		again := claim(t, st, cs[1].Step.TaskID, "w", rescue, 1)
		require.Len(t, again, 1)
		res, err = hl.HandlerAdmit(ctx, &store.HandlerAdmitParams{Class: "Pay", Limit: 1, Owner: "w", StepIDs: ids(again[0])})
		require.NoError(t, err)
		require.Len(t, res.Granted, 1)
	})

	t.Run("HandlerConcurrentAdmissionsNeverExceedTheLimit", func(t *testing.T) {
		t.Parallel()
		st, hl := limiter(t)
		cs := one(t, st, "Pay", "w", 16)
		var mu sync.Mutex
		granted := 0
		var wg sync.WaitGroup
		for _, c := range cs {
			wg.Go(func() {
				res, err := hl.HandlerAdmit(ctx, &store.HandlerAdmitParams{Class: "Pay", Limit: 3, Owner: "w", StepIDs: ids(c)})
				if !assertNoError(t, err) {
					return
				}
				mu.Lock()
				granted += len(res.Granted)
				mu.Unlock()
			})
		}
		wg.Wait()
		require.Equal(t, 3, granted)
		require.Equal(t, 3, running(t, hl, "Pay"))
	})
}
