package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

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

	// A call of more tasks than sqlcore.CopyMinRows (their task rows go
	// by COPY on PostgreSQL, with ids taken from the sequence first): every
	// column a task row holds is written as asked, a key already held
	// returns its task, and the ids follow the order asked.
	t.Run("TaskCreateManyOfManyTasksKeepsEveryColumn", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		held, err := st.TaskCreate(ctx, diamond("held-8"))
		require.NoError(t, err)
		const n = 100
		runAt := t0.Add(time.Hour)
		keep, keepFailed := 2*time.Hour, 3*time.Hour
		var ps []*store.TaskCreateParams
		for i := range n {
			p := diamond("")
			p.Context = json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))
			p.Priority = i % 5
			p.Tags = []string{fmt.Sprintf("t%d", i%3)}
			p.SourceSystem = fmt.Sprintf("src-%d", i)
			switch i % 4 {
			case 0:
				p.IdempotencyKey = fmt.Sprintf("held-%d", i%10)
			case 1:
				p.RunAt = &runAt
				p.Queue = store.QueueOp{Kind: store.QueueUpsert, Operation: "enqueue", RunAt: runAt}
			case 2:
				p.Retention, p.RetentionFailed = &keep, &keepFailed
				p.Concurrency = &store.TaskConcurrency{Key: fmt.Sprintf("acct-%d", i), Limit: 2, Policy: "queue"}
			case 3:
				p.Queue = store.QueueOp{}
			}
			ps = append(ps, p)
		}
		res, err := st.TaskCreateMany(ctx, ps)
		require.NoError(t, err)
		require.Len(t, res, n)
		var prev int64
		queued := 0
		byKey := map[string]int64{}
		for i, r := range res {
			p := ps[i]
			if first, dup := byKey[p.IdempotencyKey]; p.IdempotencyKey != "" && (dup || p.IdempotencyKey == "held-8") {
				// A key held before the call, or by an earlier request of it.
				require.False(t, r.Created, "task %d: key %s already held", i, p.IdempotencyKey)
				want := held.Task.ID
				if dup {
					want = first
				}
				require.Equal(t, want, r.Task.ID, "task %d: key %s", i, p.IdempotencyKey)
				continue
			}
			if p.IdempotencyKey != "" {
				byKey[p.IdempotencyKey] = r.Task.ID
			}
			require.True(t, r.Created, "task %d", i)
			require.Greater(t, r.Task.ID, prev, "task %d: ids in the order asked", i)
			prev = r.Task.ID
			got, err := st.TaskGet(ctx, r.Task.ID)
			require.NoError(t, err)
			require.Equal(t, r.Task, got, "task %d: the result is the row", i)
			require.JSONEq(t, string(p.Context), string(got.Context), "task %d", i)
			require.Equal(t, p.Priority, got.Priority, "task %d", i)
			require.Equal(t, p.Tags, got.Tags, "task %d", i)
			require.Equal(t, p.SourceSystem, got.SourceSystem, "task %d", i)
			require.Equal(t, p.IdempotencyKey, got.IdempotencyKey, "task %d", i)
			require.Equal(t, taskertype.TaskStatePending, got.State, "task %d", i)
			require.Equal(t, p.MaxParallelSteps, got.MaxParallelSteps, "task %d", i)
			if p.RunAt != nil {
				require.NotNil(t, got.RunAt, "task %d", i)
				require.True(t, got.RunAt.Equal(runAt), "task %d: run_at %s", i, got.RunAt)
			} else {
				require.Nil(t, got.RunAt, "task %d", i)
			}
			if p.Retention != nil {
				require.Equal(t, int64(7200), *got.RetentionSeconds, "task %d", i)
				require.Equal(t, int64(10800), *got.RetentionFailedSeconds, "task %d", i)
			} else {
				require.Nil(t, got.RetentionSeconds, "task %d", i)
			}
			steps, err := st.StepList(ctx, r.Task.ID)
			require.NoError(t, err)
			require.Len(t, steps, len(p.Steps), "task %d", i)
			if p.Queue.Kind == store.QueueUpsert {
				queued++
			}
		}
		q, err := st.QueueList(ctx, 1000)
		require.NoError(t, err)
		require.Len(t, q, queued+1, "the records of the created tasks queued, and the held task's")
		due := 0
		for _, e := range q {
			if !e.RunAt.After(t0) {
				due++
			}
		}
		require.Equal(t, queued+1-n/4, due, "the delayed tasks' records are due at their run_at")
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
