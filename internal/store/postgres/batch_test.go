package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
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

// Two claims of one task in one combined batch (a coordinator claiming in
// two halves, or two coordinators) take different steps, and together as
// many as they asked for.
func TestBatchedClaimsOfOneTaskTakeDistinctSteps(t *testing.T) {
	t.Parallel()
	st := testdb.Postgres(t)
	now := time.Now().UTC()
	specs := []store.StepSpec{{Name: "root", HandlerClass: "h", MaxAttempts: 1}}
	for i := 0; i < 10; i++ {
		specs = append(specs, store.StepSpec{Name: fmt.Sprintf("leaf%d", i), HandlerClass: "h", MaxAttempts: 1,
			Parents: []string{"root"}})
	}
	id, root := startTask(t, st, "w", now, specs...) // claims the root
	_, err := st.StepRecord(context.Background(), &store.StepRecordParams{TaskID: id, Owner: "w", Now: now,
		Outcomes: []store.StepOutcome{{StepID: root.Step.ID, To: taskertype.StepStateComplete, Event: "succeed",
			Results: json.RawMessage(`{}`)}}})
	require.NoError(t, err)
	claim := func() *store.StepClaimParams {
		return &store.StepClaimParams{TaskID: id, Owner: "w", Limit: 4, Now: now, LeaseUntil: now.Add(time.Minute)}
	}
	claimed, errs := st.ClaimBatchForTest([]*store.StepClaimParams{claim(), claim()})
	require.NoError(t, errs[0])
	require.NoError(t, errs[1])
	require.Len(t, claimed[0], 4)
	require.Len(t, claimed[1], 4)
	seen := map[int64]bool{}
	for _, cs := range claimed {
		for _, c := range cs {
			require.False(t, seen[c.Step.ID], "step %s claimed twice", c.Step.Name)
			seen[c.Step.ID] = true
			require.Equal(t, 1, c.Step.Attempts, "step %s", c.Step.Name)
		}
	}
}
