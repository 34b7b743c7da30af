package postgres_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/store/postgres"
	"github.com/tasker-systems/tasker/taskertype"
)

// startTask creates a task of steps (one step per spec, in order), starts
// it and claims its ready steps for owner, as a coordinator's Handle does;
// it requires the start to apply and one step to be claimed.
func startTask(t *testing.T, st *postgres.Store, owner string, now time.Time, steps ...store.StepSpec) (int64, *store.ClaimedStep) {
	t.Helper()
	ctx := context.Background()
	res, err := st.TaskCreate(ctx, &store.TaskCreateParams{Namespace: "ns", Name: "t", Version: "1.0.0",
		Context: json.RawMessage(`{}`), MaxParallelSteps: len(steps), Now: now, Steps: steps})
	require.NoError(t, err)
	tr, _, claimed, err := st.TaskStartAndClaim(ctx, &store.TaskTransitionParams{TaskID: res.Task.ID,
		From: []taskertype.TaskState{taskertype.TaskStatePending}, To: taskertype.TaskStateInProgress,
		Event: "start", Actor: "t", Now: now},
		&store.StepClaimParams{TaskID: res.Task.ID, Owner: owner, Now: now, LeaseUntil: now.Add(time.Minute)})
	require.NoError(t, err)
	require.True(t, tr.Changed)
	require.Len(t, claimed, 1)
	return res.Task.ID, claimed[0]
}
