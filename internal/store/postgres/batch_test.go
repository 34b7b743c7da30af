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

// Two claims of one task in one TaskStartAndClaimMany (a coordinator
// claiming in two halves, or two coordinators, batched by the engine) take
// different steps, and together as many as they asked for: they go in
// separate statements (rounds).
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
	var rs []*store.StartAndClaimResult
	require.NoError(t, st.Transact(context.Background(), func(tx store.Tx) error {
		var err error
		rs, err = tx.TaskStartAndClaimMany(context.Background(), []*store.StartAndClaimParams{{Claim: claim()}, {Claim: claim()}})
		return err
	}))
	require.NoError(t, rs[0].Err)
	require.NoError(t, rs[1].Err)
	require.Len(t, rs[0].Claimed, 4)
	require.Len(t, rs[1].Claimed, 4)
	seen := map[int64]bool{}
	for _, r := range rs {
		for _, c := range r.Claimed {
			require.False(t, seen[c.Step.ID], "step %s claimed twice", c.Step.Name)
			seen[c.Step.ID] = true
			require.Equal(t, 1, c.Step.Attempts, "step %s", c.Step.Name)
		}
	}
}
