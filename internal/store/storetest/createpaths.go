package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store"
)

// variedTask is the i-th of a set of tasks that between them vary every
// column a creation writes: task options, enqueue records, concurrency,
// retention, step options, bypassed steps and edges.
func variedTask(i int) *store.TaskCreateParams {
	p := diamond("")
	p.Context = json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))
	p.Priority = i % 5
	p.Tags = []string{fmt.Sprintf("t%d", i%3), "all"}
	p.SourceSystem = fmt.Sprintf("src-%d", i)
	p.Initiator = fmt.Sprintf("init-%d", i%2)
	p.Reason = fmt.Sprintf("reason %d", i)
	p.Actor = fmt.Sprintf("actor-%d", i%3)
	p.MaxParallelSteps = 1 + i%4
	p.Now = t0.Add(time.Duration(i) * time.Millisecond)
	p.Steps[0].HandlerConfig = json.RawMessage(fmt.Sprintf(`{"url":"http://x/%d"}`, i))
	p.Steps[1].Inputs = json.RawMessage(`{"from":"a"}`)
	p.Steps[1].TimeoutSeconds = 30
	p.Steps[2].Skippable = true
	runAt := t0.Add(time.Hour)
	keep, keepFailed := 2*time.Hour, 3*time.Hour
	switch i % 5 {
	case 0:
		p.Context = json.RawMessage(`{}`)
		p.Tags = nil
	case 1:
		p.RunAt = &runAt
		p.Queue = store.QueueOp{Kind: store.QueueUpsert, Operation: "reenqueue", RunAt: runAt, Priority: 7, Reason: "later"}
	case 2:
		p.Retention, p.RetentionFailed = &keep, &keepFailed
		p.Concurrency = &store.TaskConcurrency{Key: fmt.Sprintf("acct-%d", i), Limit: 2, Policy: "queue"}
	case 3:
		p.Queue = store.QueueOp{}
		p.Steps[2].Bypassed = true
	case 4:
		p.Queue = store.QueueOp{Kind: store.QueueUpsert} // operation and time defaulted
		p.Steps = p.Steps[:1]                            // a single step, no edges
	}
	return p
}

// exerciseTaskCreatePaths: a store may write a call without idempotency
// keys another way than a call with them (PostgreSQL: one statement,
// TaskCreateRound, instead of a transaction), and calls of many tasks
// another way than calls of few (COPY). Whatever the way, the same
// requests leave the same rows: every task, step, edge, transition,
// enqueue record and concurrency setting read back is the same but for
// ids and keys. On PostgreSQL, 7 tasks compare the statement with
// multi-row INSERTs, 100 the statement with COPY, 300 COPY with COPY (the
// keyed call holds a key the store has, which sends it down the
// transaction path; new keys alone would take the statement too).
func exerciseTaskCreatePaths(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	for _, n := range []int{7, 100, 300} {
		t.Run(fmt.Sprintf("TaskCreateManyWritesTheSameRowsWithOrWithoutKeys/%d", n), func(t *testing.T) {
			t.Parallel()
			st := newStore(t)
			// The keyed call starts with a key the store holds already, so
			// that it is written by the transaction that looks keys up.
			heldKey := fmt.Sprintf("paths-held-%d", n)
			held := variedTask(0)
			held.IdempotencyKey = heldKey
			_, err := st.TaskCreate(ctx, held)
			require.NoError(t, err)
			again := variedTask(0)
			again.IdempotencyKey = heldKey
			keyed := []*store.TaskCreateParams{again}
			var plain []*store.TaskCreateParams
			for i := range n {
				k := variedTask(i)
				k.IdempotencyKey = fmt.Sprintf("paths-%d-%d", n, i)
				keyed = append(keyed, k)
				plain = append(plain, variedTask(i))
			}
			kres, err := st.TaskCreateMany(ctx, keyed)
			require.NoError(t, err)
			require.False(t, kres[0].Created, "the held key's task")
			kres = kres[1:]
			pres, err := st.TaskCreateMany(ctx, plain)
			require.NoError(t, err)
			require.Len(t, kres, n)
			require.Len(t, pres, n)
			queue := queueByTask(t, st)
			var prev int64
			for i := range n {
				require.True(t, pres[i].Created, "task %d", i)
				require.Greater(t, pres[i].Task.ID, prev, "task %d: ids in the order asked", i)
				prev = pres[i].Task.ID
				k, p := createdRows(t, st, kres[i].Task.ID, queue), createdRows(t, st, pres[i].Task.ID, queue)
				require.Equal(t, k, p, "task %d: with a key and without, the same rows", i)
				got, err := st.TaskGet(ctx, pres[i].Task.ID)
				require.NoError(t, err)
				require.Equal(t, pres[i].Task, got, "task %d: the result is the row", i)
				require.Len(t, pres[i].Steps, len(plain[i].Steps), "task %d: the result's steps", i)
			}
		})
	}
}

// queueByTask is the store's enqueue records by task.
func queueByTask(t *testing.T, st store.Store) map[int64]*store.QueueEntry {
	t.Helper()
	q, err := st.QueueList(context.Background(), 10000)
	require.NoError(t, err)
	out := make(map[int64]*store.QueueEntry, len(q))
	for _, e := range q {
		out[e.TaskID] = e
	}
	return out
}

// createdRows is everything a creation wrote for task id, as JSON
// documents without ids and idempotency keys (steps named, not numbered).
func createdRows(t *testing.T, st store.Store, id int64, queue map[int64]*store.QueueEntry) map[string]any {
	t.Helper()
	ctx := context.Background()
	doc := func(v any, drop ...string) any {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		var out any
		require.NoError(t, json.Unmarshal(b, &out))
		var strip func(any)
		strip = func(x any) {
			switch y := x.(type) {
			case map[string]any:
				for _, k := range drop {
					delete(y, k)
				}
			case []any:
				for _, e := range y {
					strip(e)
				}
			}
		}
		strip(out)
		return out
	}
	task, err := st.TaskGet(ctx, id)
	require.NoError(t, err)
	steps, err := st.StepList(ctx, id)
	require.NoError(t, err)
	names := map[int64]string{}
	for _, s := range steps {
		names[s.ID] = s.Name
	}
	trs, err := st.TaskTransitions(ctx, id)
	require.NoError(t, err)
	strs, err := st.StepTransitions(ctx, id)
	require.NoError(t, err)
	stepTrs := map[string]any{}
	for _, tr := range strs {
		stepTrs[names[tr.StepID]] = doc(tr, "id", "task_id", "step_id")
	}
	conc, err := st.TaskConcurrency(ctx, id)
	require.NoError(t, err)
	var q any
	if e := queue[id]; e != nil {
		q = doc(e, "TaskID")
	}
	return map[string]any{
		"task":             doc(task, "task_id", "idempotency_key"),
		"steps":            doc(steps, "step_id", "task_id"),
		"transitions":      doc(trs, "id", "task_id"),
		"step_transitions": stepTrs,
		"queue":            q,
		"concurrency":      doc(conc),
	}
}

// exerciseTaskCreateNewKeys: a call whose idempotency keys are all new
// (PostgreSQL writes it in one statement) creates one task per key, gives a
// key repeated within the call its first request's task (created for that
// one only), and a second call with the same keys gets the same tasks,
// none created, whether it adds new keys or not.
func exerciseTaskCreateNewKeys(t *testing.T, newStore NewStore) {
	ctx := context.Background()
	t.Run("TaskCreateManyWithNewKeys", func(t *testing.T) {
		t.Parallel()
		st := newStore(t)
		var ps []*store.TaskCreateParams
		for i := range 6 {
			p := variedTask(i)
			p.IdempotencyKey = fmt.Sprintf("new-%d", i%4) // keys 0 and 1 twice
			ps = append(ps, p)
		}
		res, err := st.TaskCreateMany(ctx, ps)
		require.NoError(t, err)
		require.Len(t, res, 6)
		byKey := map[string]int64{}
		for i, r := range res {
			k := ps[i].IdempotencyKey
			if id, ok := byKey[k]; ok {
				require.False(t, r.Created, "request %d repeats key %s", i, k)
				require.Equal(t, id, r.Task.ID, "request %d: the first request's task", i)
				continue
			}
			require.True(t, r.Created, "request %d", i)
			require.Equal(t, k, r.Task.IdempotencyKey)
			byKey[k] = r.Task.ID
		}
		all, err := st.TaskList(ctx, &store.TaskListParams{Limit: 100})
		require.NoError(t, err)
		require.Len(t, all, 4, "one task per key")

		more := append([]*store.TaskCreateParams{}, ps...)
		extra := variedTask(9)
		extra.IdempotencyKey = "new-9"
		more = append(more, extra)
		res, err = st.TaskCreateMany(ctx, more)
		require.NoError(t, err)
		for i, r := range res[:6] {
			require.False(t, r.Created, "request %d again", i)
			require.Equal(t, byKey[ps[i].IdempotencyKey], r.Task.ID, "request %d again", i)
		}
		require.True(t, res[6].Created, "the new key")
	})
}
