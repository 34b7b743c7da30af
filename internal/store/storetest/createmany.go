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

// wide is a task of one root, width leaves and a join (width+2 steps).
func wide(width int, key string) *store.TaskCreateParams {
	p := diamond(key)
	p.Name = "wide"
	p.Steps = p.Steps[:1]
	leaves := make([]string, width)
	for i := range leaves {
		leaves[i] = fmt.Sprintf("leaf_%03d", i)
		p.Steps = append(p.Steps, store.StepSpec{Name: leaves[i], HandlerClass: "h", MaxAttempts: 1, Parents: []string{"a"}})
	}
	p.Steps = append(p.Steps, store.StepSpec{Name: "join", HandlerClass: "h", MaxAttempts: 1, Parents: leaves})
	return p
}

// exerciseTaskCreateMany is the conformance of store.Store.TaskCreateMany.
func exerciseTaskCreateMany(t *testing.T, newStore NewStore) {
	ctx := context.Background()

	// Tasks of two templates and of several widths in one call (70 leaves
	// make the call's steps and edges go by COPY on PostgreSQL): every
	// task gets its own rows, and the results are in the order asked.
	t.Run("TaskCreateManyWritesEveryTaskInOrder", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		var ps []*store.TaskCreateParams
		for i := range 6 {
			var p *store.TaskCreateParams
			switch i % 3 {
			case 0:
				p = diamond("")
			case 1:
				p = wide(i*10, "")
			default:
				p = wide(1, "")
				p.Queue = store.QueueOp{}
			}
			p.Context = json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))
			ps = append(ps, p)
		}
		ps = append(ps, wide(70, ""))
		res, err := st.TaskCreateMany(ctx, ps)
		require.NoError(t, err)
		require.Len(t, res, len(ps))
		seen := map[int64]bool{}
		queued := 0
		for i, r := range res {
			p := ps[i]
			require.True(t, r.Created, "task %d", i)
			require.False(t, seen[r.Task.ID], "task %d has its own id", i)
			seen[r.Task.ID] = true
			require.Equal(t, p.Name, r.Task.Name, "task %d", i)
			require.JSONEq(t, string(p.Context), string(r.Task.Context), "task %d", i)
			require.Equal(t, taskertype.TaskStatePending, r.Task.State)
			require.Len(t, r.Steps, len(p.Steps), "task %d", i)
			steps, err := st.StepList(ctx, r.Task.ID)
			require.NoError(t, err)
			require.Len(t, steps, len(p.Steps), "task %d", i)
			parents := map[string][]string{}
			for _, s := range p.Steps {
				parents[s.Name] = s.Parents
			}
			for _, s := range steps {
				require.Equal(t, r.Task.ID, s.TaskID)
				require.ElementsMatch(t, parents[s.Name], s.Parents, "task %d step %s", i, s.Name)
			}
			trs, err := st.TaskTransitions(ctx, r.Task.ID)
			require.NoError(t, err)
			require.Len(t, trs, 1, "task %d", i)
			strs, err := st.StepTransitions(ctx, r.Task.ID)
			require.NoError(t, err)
			require.Len(t, strs, len(p.Steps), "task %d: one initial transition per step", i)
			if p.Queue.Kind == store.QueueUpsert {
				queued++
			}
		}
		q, err := st.QueueList(ctx, 100)
		require.NoError(t, err)
		require.Len(t, q, queued)
		for _, e := range q {
			require.True(t, seen[e.TaskID])
		}
		// The tasks run like any other: the join of the widest is claimed
		// only after its leaves.
		last := res[len(res)-1]
		cs := claim(t, st, last.Task.ID, "w", t0, 100)
		require.Equal(t, []string{"a"}, claimNames(cs))
	})

	t.Run("TaskCreateManyHonoursIdempotencyKeys", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		old, err := st.TaskCreate(ctx, diamond("old"))
		require.NoError(t, err)
		res, err := st.TaskCreateMany(ctx, []*store.TaskCreateParams{
			diamond("new"), diamond("old"), diamond(""), diamond("new"), wide(3, "other"),
		})
		require.NoError(t, err)
		require.Len(t, res, 5)
		require.True(t, res[0].Created)
		require.False(t, res[1].Created, "an existing key returns its task")
		require.Equal(t, old.Task.ID, res[1].Task.ID)
		require.True(t, res[2].Created)
		require.False(t, res[3].Created, "a key repeated in the call gets the first's task")
		require.Equal(t, res[0].Task.ID, res[3].Task.ID)
		require.True(t, res[4].Created)
		require.Equal(t, "other", res[4].Task.IdempotencyKey)
		all, err := st.TaskList(ctx, &store.TaskListParams{})
		require.NoError(t, err)
		require.Len(t, all, 4, "old, new, the keyless one and other")
		again, err := st.TaskCreateMany(ctx, []*store.TaskCreateParams{diamond("other"), diamond("new")})
		require.NoError(t, err)
		require.Equal(t, res[4].Task.ID, again[0].Task.ID)
		require.Equal(t, res[0].Task.ID, again[1].Task.ID)
		require.False(t, again[0].Created || again[1].Created)
	})

	t.Run("TaskCreateManyWritesAllOrNothing", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		bad := diamond("bad")
		bad.Steps[3].Parents = []string{"b", "nope"}
		_, err := st.TaskCreateMany(ctx, []*store.TaskCreateParams{diamond("good"), bad})
		var reqErr *taskertype.RequestError
		require.ErrorAs(t, err, &reqErr)
		require.Equal(t, "d", reqErr.Step)
		all, err := st.TaskList(ctx, &store.TaskListParams{})
		require.NoError(t, err)
		require.Empty(t, all, "no task of a failed call is written")
		q, err := st.QueueList(ctx, 10)
		require.NoError(t, err)
		require.Empty(t, q)
		none, err := st.TaskCreateMany(ctx, nil)
		require.NoError(t, err)
		require.Empty(t, none)
	})
}
