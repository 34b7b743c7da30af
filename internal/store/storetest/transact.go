package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/taskertype"
)

// recordFinalize is what the engine's batcher does for one record with the
// finalizer: the outcomes (locking the task), the task's summary, decide,
// and its transition, in one Store.Transact.
func recordFinalize(ctx context.Context, st store.Store, p *store.StepRecordParams,
	decide func(*store.TaskSummary) *store.TaskTransitionParams) ([]bool, *store.TransitionResult, error) {
	var applied []bool
	var tr *store.TransitionResult
	err := st.Transact(ctx, func(tx store.Tx) error {
		applied, tr = nil, nil
		a, err := tx.StepRecordMany(ctx, &store.StepRecordManyParams{Records: []*store.StepRecordParams{p},
			Lock: []int64{p.TaskID}})
		if err != nil {
			return err
		}
		applied = a[0]
		sums, err := tx.TaskSummaries(ctx, []int64{p.TaskID}, []time.Time{p.Now})
		if err != nil {
			return err
		}
		tp := decide(sums[p.TaskID])
		if tp == nil {
			return nil
		}
		trs, errs, err := tx.TaskTransitionMany(ctx, []*store.TaskTransitionParams{tp})
		if err != nil {
			return err
		}
		tr = trs[0]
		return errs[0]
	})
	return applied, tr, err
}

// exerciseTransact checks the transaction executor and its bulk operations.
func exerciseTransact(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	start := func(id int64) *store.TaskTransitionParams {
		return &store.TaskTransitionParams{TaskID: id, From: []taskertype.TaskState{taskertype.TaskStatePending},
			To: taskertype.TaskStateInProgress, Event: "start", Actor: "r1", Now: t0}
	}
	claimP := func(id int64) *store.StepClaimParams {
		return &store.StepClaimParams{TaskID: id, Owner: "r1", Now: t0, LeaseUntil: t0.Add(time.Minute)}
	}

	t.Run("TransactBulkOperationsOfSeveralTasks", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		var ids []int64
		for range 3 {
			res, err := st.TaskCreate(ctx, diamond(""))
			require.NoError(t, err)
			ids = append(ids, res.Task.ID)
		}
		const missing = int64(1 << 40)
		var starts []*store.StartAndClaimParams
		for _, id := range append(ids, missing) {
			starts = append(starts, &store.StartAndClaimParams{Start: start(id), Claim: claimP(id)})
		}
		// Two plain claims of the first task in the same call take distinct
		// steps: only a is ready, so the second claims nothing.
		starts = append(starts, &store.StartAndClaimParams{Claim: &store.StepClaimParams{TaskID: ids[0], Owner: "r2", Limit: 4,
			Now: t0, LeaseUntil: t0.Add(time.Minute)}})
		var claimed []*store.StartAndClaimResult
		require.NoError(t, st.Transact(ctx, func(tx store.Tx) error {
			var err error
			claimed, err = tx.TaskStartAndClaimMany(ctx, starts)
			return err
		}))
		require.Len(t, claimed, 5)
		for i := range ids {
			require.NoError(t, claimed[i].Err)
			require.True(t, claimed[i].Transition.Changed)
			require.Equal(t, taskertype.TaskStateInProgress, claimed[i].Task.State)
			require.Equal(t, []string{"a"}, claimNames(claimed[i].Claimed), "task %d", i)
		}
		var nf *taskertype.TaskNotFoundError
		require.True(t, errors.As(claimed[3].Err, &nf), "a missing task fails alone: %v", claimed[3].Err)
		require.Empty(t, claimed[4].Claimed, "a is held by the first claim")

		// Record a of every task, summarize, complete the first task only
		// (and try a missing one): one transaction.
		recs := make([]*store.StepRecordParams, len(ids))
		for i, id := range ids {
			recs[i] = &store.StepRecordParams{TaskID: id, Owner: "r1", Now: t0, Outcomes: []store.StepOutcome{{
				StepID: claimed[i].Claimed[0].Step.ID, To: taskertype.StepStateComplete, Event: "succeed",
				Results: json.RawMessage(`{}`)}}}
		}
		var applied [][]bool
		var sums map[int64]*store.TaskSummary
		var trs []*store.TransitionResult
		var errs []error
		require.NoError(t, st.Transact(ctx, func(tx store.Tx) error {
			var err error
			if applied, err = tx.StepRecordMany(ctx, &store.StepRecordManyParams{Records: recs, Lock: ids}); err != nil {
				return err
			}
			if sums, err = tx.TaskSummaries(ctx, ids, []time.Time{t0, t0, t0}); err != nil {
				return err
			}
			trs, errs, err = tx.TaskTransitionMany(ctx, []*store.TaskTransitionParams{
				{TaskID: ids[0], From: []taskertype.TaskState{taskertype.TaskStateInProgress}, To: taskertype.TaskStateBlocked,
					Event: "block", Actor: "r1", Now: t0, Queue: store.QueueOp{Kind: store.QueueDelete}},
				{TaskID: missing, From: []taskertype.TaskState{taskertype.TaskStateInProgress}, To: taskertype.TaskStateBlocked,
					Event: "block", Actor: "r1", Now: t0},
				{TaskID: ids[1], From: []taskertype.TaskState{taskertype.TaskStatePending}, To: taskertype.TaskStateBlocked,
					Event: "block", Actor: "r1", Now: t0},
			})
			return err
		}))
		require.Equal(t, [][]bool{{true}, {true}, {true}}, applied)
		for _, id := range ids {
			require.Equal(t, 1, sums[id].Complete, "task %d", id)
			require.Equal(t, 2, sums[id].Ready, "task %d: b and c are ready once a is recorded", id)
		}
		require.True(t, trs[0].Changed)
		require.Nil(t, trs[1])
		require.True(t, errors.As(errs[1], &nf), "%v", errs[1])
		require.False(t, trs[2].Changed, "the guard failed: the task is in progress")
		require.Equal(t, taskertype.TaskStateInProgress, trs[2].State)
		task, err := st.TaskGet(ctx, ids[0])
		require.NoError(t, err)
		require.Equal(t, taskertype.TaskStateBlocked, task.State)
	})

	t.Run("TransactRollsBackOnError", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		res, err := st.TaskCreate(ctx, diamond(""))
		require.NoError(t, err)
		id := res.Task.ID
		boom := errors.New("boom")
		err = st.Transact(ctx, func(tx store.Tx) error {
			rs, err := tx.TaskStartAndClaimMany(ctx, []*store.StartAndClaimParams{{Start: start(id), Claim: claimP(id)}})
			require.NoError(t, err)
			require.Len(t, rs[0].Claimed, 1)
			return boom
		})
		require.ErrorIs(t, err, boom)
		task, err := st.TaskGet(ctx, id)
		require.NoError(t, err)
		require.Equal(t, taskertype.TaskStatePending, task.State, "the start was rolled back")
		steps, err := st.StepList(ctx, id)
		require.NoError(t, err)
		for _, s := range steps {
			require.Equal(t, taskertype.StepStatePending, s.State, "step %s", s.Name)
			require.Zero(t, s.Attempts, "step %s", s.Name)
		}
	})

	t.Run("TransactHonoursContext", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		ran := false
		err := st.Transact(cctx, func(store.Tx) error { ran = true; return nil })
		require.ErrorIs(t, err, context.Canceled)
		require.False(t, ran, "nothing runs under a cancelled context")
	})
}
