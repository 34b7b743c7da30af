package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// A round of creates is one statement (TaskCreateRound), and a round with
// new idempotency keys one more (the keys' lookup): counted in round trips
// once the template's named rows are cached. A key the store holds sends
// the round down the transaction path (BEGIN, the lookup, the writes,
// COMMIT, the read-back), which costs more: the count tells the paths
// apart.
func TestCreateRoundTrips(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := testdb.Postgres(t)
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	req := func(key string) *store.TaskCreateParams {
		return &store.TaskCreateParams{Namespace: "ns", Name: "rt", Version: "1.0.0", Context: []byte(`{}`),
			Initiator: "test", MaxParallelSteps: 1, Actor: "test", Now: t0, IdempotencyKey: key, SkipStepsResult: true,
			Steps: []store.StepSpec{{Name: "a", HandlerClass: "h", MaxAttempts: 1},
				{Name: "b", HandlerClass: "h", MaxAttempts: 1, Parents: []string{"a"}}},
			Queue: store.QueueOp{Kind: store.QueueUpsert, Operation: "enqueue", RunAt: t0}}
	}
	for i := range 2 { // the template's named rows written, then cached
		_, err := st.TaskCreateMany(ctx, []*store.TaskCreateParams{req(""), req(fmt.Sprintf("warm-%d", i))})
		require.NoError(t, err)
	}
	count := func(ps ...*store.TaskCreateParams) int64 {
		before := st.RoundTrips()
		res, err := st.TaskCreateMany(ctx, ps)
		require.NoError(t, err)
		require.Len(t, res, len(ps))
		return st.RoundTrips() - before
	}
	require.Equal(t, int64(1), count(req(""), req(""), req("")), "without keys: one statement")
	require.Equal(t, int64(2), count(req("k1"), req(""), req("k2")), "new keys: the lookup and the statement")
	require.Greater(t, count(req("k1"), req("k3")), int64(3), "a held key: the transaction path")
}
