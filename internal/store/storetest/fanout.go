package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/taskertype"
)

// fanOutTask is a -> x -> z, x being the placeholder a fan-out expands.
func fanOutTask() *store.TaskCreateParams {
	return &store.TaskCreateParams{
		Namespace: "ns", Name: "fanout", Version: "1.0.0", Context: json.RawMessage(`{}`),
		Initiator: "test", Reason: "conformance", MaxParallelSteps: 4,
		Steps: []store.StepSpec{
			{Name: "a", HandlerClass: "h", Retryable: true, MaxAttempts: 3},
			{Name: "x", HandlerClass: "each", Retryable: true, MaxAttempts: 2, TimeoutSeconds: 7, Parents: []string{"a"}},
			{Name: "z", HandlerClass: "h", Retryable: true, MaxAttempts: 3, Parents: []string{"x"}},
		},
		Actor: "test", Now: t0,
	}
}

// fanOutChildren are n children of placeholder x.
func fanOutChildren(n int) []store.StepSpec {
	out := make([]store.StepSpec, n)
	for i := range out {
		out[i] = store.StepSpec{Name: fmt.Sprintf("x[%d]", i), HandlerClass: "each", Retryable: true, MaxAttempts: 2,
			TimeoutSeconds: 7, Inputs: json.RawMessage(fmt.Sprintf(`{"item":%d,"index":%d}`, i*10, i))}
	}
	return out
}

// startFanOut creates fanOutTask, completes a and claims x for owner w.
func startFanOut(t *testing.T, st store.Store) (int64, *store.ClaimedStep) {
	t.Helper()
	res, err := st.TaskCreate(context.Background(), fanOutTask())
	require.NoError(t, err)
	id := res.Task.ID
	succeed(t, st, id, "w", t0, claim(t, st, id, "w", t0, 10)...)
	cs := claim(t, st, id, "w", t0, 10)
	require.Equal(t, []string{"x"}, claimNames(cs))
	return id, cs[0]
}

// exerciseFanOut is the conformance of store.FanOutStore.StepFanOut.
func exerciseFanOut(t *testing.T, newStore NewStore) {
	ctx := context.Background()

	// The expansion writes the children (pending, parents: the
	// placeholder's), makes them the placeholder's parents and gives the
	// placeholder back; the children are claimable at once and the
	// placeholder only once they are all done. 100 children: COPY on
	// PostgreSQL.
	t.Run("FanOutExpands", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		id, x := startFanOut(t, st)
		const n = 100
		res, err := st.StepFanOut(ctx, &store.StepFanOutParams{TaskID: id, StepID: x.Step.ID, Owner: "w", Attempt: 1,
			Children: fanOutChildren(n), Event: "expand", Reason: "fanned out", Actor: "w", Now: t0})
		require.NoError(t, err)
		require.True(t, res.Applied)
		require.Len(t, res.ChildIDs, n)

		steps, err := st.StepList(ctx, id)
		require.NoError(t, err)
		require.Len(t, steps, 3+n)
		byName := map[string]*taskertype.Step{}
		for _, s := range steps {
			byName[s.Name] = s
		}
		ph := byName["x"]
		require.Equal(t, taskertype.StepStatePending, ph.State)
		require.Zero(t, ph.Attempts, "the expansion gives the attempt back")
		require.Empty(t, ph.LeaseOwner)
		require.Len(t, ph.Parents, 1+n)
		for i := range n {
			c := byName[fmt.Sprintf("x[%d]", i)]
			require.NotNil(t, c, "x[%d]", i)
			require.Equal(t, res.ChildIDs[i], c.ID)
			require.Equal(t, taskertype.StepStatePending, c.State)
			require.Equal(t, []string{"a"}, c.Parents)
			require.Equal(t, "each", c.HandlerClass)
			require.Equal(t, 2, c.MaxAttempts)
			require.Equal(t, 7, c.TimeoutSeconds)
			require.JSONEq(t, fmt.Sprintf(`{"item":%d,"index":%d}`, i*10, i), string(c.Inputs))
		}
		trs, err := st.StepTransitions(ctx, id)
		require.NoError(t, err)
		var expand, initialized int
		for _, tr := range trs {
			switch {
			case tr.Event == "expand":
				expand++
				require.Equal(t, "in_progress", tr.FromState)
				require.Equal(t, "pending", tr.ToState)
				require.Equal(t, "fanned out", tr.Reason)
			case tr.Event == "initialize":
				initialized++
			}
		}
		require.Equal(t, 1, expand)
		require.Equal(t, 3+n, initialized, "every child has its initial transition")

		sum, err := st.TaskSummary(ctx, id, t0)
		require.NoError(t, err)
		require.Equal(t, 3+n, sum.Total)
		require.Equal(t, n, sum.Ready, "the children are ready, the placeholder is not")

		cs := claim(t, st, id, "w", t0, 2*n)
		require.Len(t, cs, n, "only the children")
		require.JSONEq(t, `{"from":"a"}`, string(cs[0].DependencyResults["a"]))
		succeed(t, st, id, "w", t0, cs[:n-1]...)
		require.Empty(t, claim(t, st, id, "w", t0, 10), "one child left: the placeholder waits")
		succeed(t, st, id, "w", t0, cs[n-1])
		cs = claim(t, st, id, "w", t0, 10)
		require.Equal(t, []string{"x"}, claimNames(cs))
		require.Equal(t, 1, cs[0].Step.Attempts)
		require.Len(t, cs[0].DependencyResults, 1+n)
		require.JSONEq(t, `{"from":"x[42]"}`, string(cs[0].DependencyResults["x[42]"]))
	})

	// A placeholder not held by the owner (another owner, another attempt)
	// is not expanded: nothing is written.
	t.Run("FanOutNotHeld", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		id, x := startFanOut(t, st)
		for _, p := range []*store.StepFanOutParams{
			{Owner: "other", Attempt: 1}, {Owner: "w", Attempt: 2},
		} {
			p.TaskID, p.StepID, p.Children, p.Event, p.Now = id, x.Step.ID, fanOutChildren(3), "expand", t0
			res, err := st.StepFanOut(ctx, p)
			require.NoError(t, err)
			require.False(t, res.Applied)
			require.Empty(t, res.ChildIDs)
		}
		steps, err := st.StepList(ctx, id)
		require.NoError(t, err)
		require.Len(t, steps, 3)
		require.Equal(t, taskertype.StepStateInProgress, steps[1].State)
	})

	// The expansion is one transaction: a child that cannot be written (its
	// name is taken) writes no child, no edge and leaves the placeholder in
	// progress under its lease, so that a crash or failure mid-way leaves
	// nothing half-expanded.
	t.Run("FanOutAllOrNothing", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		id, x := startFanOut(t, st)
		children := fanOutChildren(80)
		children[70].Name = "z" // taken
		_, err := st.StepFanOut(ctx, &store.StepFanOutParams{TaskID: id, StepID: x.Step.ID, Owner: "w", Attempt: 1,
			Children: children, Event: "expand", Now: t0})
		require.Error(t, err)
		steps, err := st.StepList(ctx, id)
		require.NoError(t, err)
		require.Len(t, steps, 3, "no child written")
		ph := steps[1]
		require.Equal(t, "x", ph.Name)
		require.Equal(t, taskertype.StepStateInProgress, ph.State)
		require.Equal(t, "w", ph.LeaseOwner)
		require.Equal(t, []string{"a"}, ph.Parents, "no edge written")
		trs, err := st.StepTransitions(ctx, id)
		require.NoError(t, err)
		for _, tr := range trs {
			require.NotEqual(t, "expand", tr.Event)
		}
		// Retried with good children, it expands.
		res, err := st.StepFanOut(ctx, &store.StepFanOutParams{TaskID: id, StepID: x.Step.ID, Owner: "w", Attempt: 1,
			Children: fanOutChildren(80), Event: "expand", Now: t0})
		require.NoError(t, err)
		require.True(t, res.Applied)
		require.Len(t, res.ChildIDs, 80)
	})
}
