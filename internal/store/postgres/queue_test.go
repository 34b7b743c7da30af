package postgres_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/store/postgres"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/taskertype"
)

// On PostgreSQL a claim with Start starts a pending task without a
// concurrency key in the claim's statement (the conformance suite allows a
// store to start none).
func TestQueueClaimStartsTasks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := postgres.Open(ctx, testdb.PostgresURL(t))
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	_, err = st.MigrateUp(ctx, 0)
	require.NoError(t, err)
	now := time.Now().UTC().Truncate(time.Microsecond)
	res, err := st.TaskCreate(ctx, &store.TaskCreateParams{Namespace: "ns", Name: "t", Version: "1.0.0",
		Context: json.RawMessage(`{}`), MaxParallelSteps: 1, Now: now,
		Steps: []store.StepSpec{{Name: "a", HandlerClass: "h", MaxAttempts: 1}},
		Queue: store.QueueOp{Kind: store.QueueUpsert, RunAt: now}})
	require.NoError(t, err)
	got, err := st.QueueClaim(ctx, &store.QueueClaimParams{Owner: "o", Limit: 1, Now: now, LeaseUntil: now.Add(time.Minute),
		Start: true, StartReason: "r"})
	require.NoError(t, err)
	require.Len(t, got, 1)
	require.Equal(t, res.Task.ID, got[0].TaskID)
	require.NotNil(t, got[0].Started)
	task, err := st.TaskGet(ctx, res.Task.ID)
	require.NoError(t, err)
	require.Equal(t, taskertype.TaskStateInProgress, task.State)
}
