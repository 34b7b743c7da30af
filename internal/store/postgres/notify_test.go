package postgres_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// Runners are notified when queue work becomes available, and only then: a
// claim (even one that finds nothing) must not wake every idle runner, or
// idle runners wake each other in a loop.
func TestQueueNotifications(t *testing.T) {
	t.Parallel()
	st := testdb.Postgres(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch, err := st.Listen(ctx)
	require.NoError(t, err)
	// A notification that must come is waited for generously (a loaded
	// machine delays it); one that must not come is watched for 500 ms.
	expect := func(want bool, what string) {
		t.Helper()
		wait := 500 * time.Millisecond
		if want {
			wait = 30 * time.Second
		}
		select {
		case <-ch:
			require.True(t, want, "unexpected notification after %s", what)
		case <-time.After(wait):
			require.False(t, want, "no notification after %s", what)
		}
	}
	expect(true, "connecting") // the wake-up after (re)connecting
	now := time.Now()
	claim := func() []*store.QueueEntry {
		got, err := st.QueueClaim(ctx, &store.QueueClaimParams{Owner: "r", Limit: 5, Now: time.Now(), LeaseUntil: time.Now().Add(time.Minute)})
		require.NoError(t, err)
		return got
	}
	require.Empty(t, claim())
	expect(false, "an empty claim")

	_, err = st.TaskCreate(ctx, &store.TaskCreateParams{Namespace: "ns", Name: "n", Version: "1.0.0",
		Context: json.RawMessage(`{}`), MaxParallelSteps: 1, Actor: "t", Now: now,
		Steps: []store.StepSpec{{Name: "a", HandlerClass: "h", Retryable: true, MaxAttempts: 1}},
		Queue: store.QueueOp{Kind: store.QueueUpsert, Operation: "enqueue", RunAt: now}})
	require.NoError(t, err)
	expect(true, "an enqueue")

	entries := claim()
	require.Len(t, entries, 1)
	expect(false, "a claim that took an entry")

	require.NoError(t, st.QueueRelease(ctx, entries[0].TaskID, "r", time.Now()))
	expect(true, "a release")
}
