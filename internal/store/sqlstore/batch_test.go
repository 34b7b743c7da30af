package sqlstore_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/taskertype"
)

// A call that fails a combined batch fails alone: the batch is run again
// one call at a time, and the others commit.
func TestBatchFailureStaysWithItsCall(t *testing.T) {
	t.Parallel()
	st := testdb.Postgres(t)
	ctx := context.Background()
	now := time.Now().UTC()
	type running struct {
		taskID int64
		step   *store.ClaimedStep
	}
	startOne := func() running {
		id, step := startTask(t, st, "w", now, store.StepSpec{Name: "only", HandlerClass: "h", MaxAttempts: 1})
		return running{taskID: id, step: step}
	}
	bad, good := startOne(), startOne()
	record := func(r running) *store.StepRecordParams {
		return &store.StepRecordParams{TaskID: r.taskID, Owner: "w", Now: now, Outcomes: []store.StepOutcome{{
			StepID: r.step.Step.ID, To: taskertype.StepStateComplete, Event: "succeed", Results: json.RawMessage(`{}`)}}}
	}
	complete := func(r running, queue store.QueueOpKind) func(*store.TaskSummary) *store.TaskTransitionParams {
		return func(*store.TaskSummary) *store.TaskTransitionParams {
			return &store.TaskTransitionParams{TaskID: r.taskID, From: []taskertype.TaskState{taskertype.TaskStateInProgress},
				To: taskertype.TaskStateComplete, Event: "complete", Actor: "w", Now: now, Queue: store.QueueOp{Kind: queue}}
		}
	}
	applied, trs, errs := st.RecordBatchForTest([]*store.StepRecordParams{record(bad), record(good)},
		[]func(*store.TaskSummary) *store.TaskTransitionParams{complete(bad, store.QueueOpKind(99)), complete(good, store.QueueDelete)})
	require.ErrorContains(t, errs[0], "unknown queue operation")
	require.NoError(t, errs[1])
	require.Equal(t, []bool{true}, applied[1])
	require.True(t, trs[1].Changed)

	task, err := st.TaskGet(ctx, good.taskID)
	require.NoError(t, err)
	require.Equal(t, taskertype.TaskStateComplete, task.State, "the good call committed")
	task, err = st.TaskGet(ctx, bad.taskID)
	require.NoError(t, err)
	require.Equal(t, taskertype.TaskStateInProgress, task.State, "the bad call wrote nothing")
	steps, err := st.StepList(ctx, bad.taskID)
	require.NoError(t, err)
	require.Equal(t, taskertype.StepStateInProgress, steps[0].State)
}
