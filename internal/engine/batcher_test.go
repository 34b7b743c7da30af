package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/taskertype"
)

// batcherStores opens a fresh migrated store of each kind.
var batcherStores = map[string]func(testing.TB) store.Store{
	"sqlite":   func(tb testing.TB) store.Store { return testdb.SQLite(tb) },
	"postgres": func(tb testing.TB) store.Store { return testdb.Postgres(tb) },
}

// runningTask creates a one-step task, starts it and claims its step for
// owner "w".
func runningTask(t *testing.T, st store.Store, now time.Time) (*taskertype.Task, *store.ClaimedStep) {
	t.Helper()
	ctx := context.Background()
	res, err := st.TaskCreate(ctx, &store.TaskCreateParams{Namespace: "t", Name: "one", Version: "1.0.0",
		Context: json.RawMessage(`{}`), MaxParallelSteps: 1, Now: now,
		Steps: []store.StepSpec{{Name: "only", HandlerClass: "h", MaxAttempts: 1}}})
	require.NoError(t, err)
	_, task, claimed, err := st.TaskStartAndClaim(ctx, &store.TaskTransitionParams{TaskID: res.Task.ID,
		From: []taskertype.TaskState{taskertype.TaskStatePending}, To: taskertype.TaskStateInProgress, Event: "start",
		Actor: "w", Now: now}, &store.StepClaimParams{TaskID: res.Task.ID, Owner: "w", Limit: 1, Now: now,
		LeaseUntil: now.Add(time.Hour)})
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	return task, claimed[0]
}

// success records the step's success with results.
func success(task *taskertype.Task, c *store.ClaimedStep, now time.Time, results string) *store.StepRecordParams {
	return &store.StepRecordParams{TaskID: task.ID, Owner: "w", Now: now, Outcomes: []store.StepOutcome{{
		StepID: c.Step.ID, To: taskertype.StepStateComplete, Event: "succeed", Results: json.RawMessage(results),
		Attempt: c.Step.Attempts}}}
}

// gatedBatcher is a record batcher of one worker whose first batch waits
// at the gate until released, so that the requests made meanwhile queue
// up and go together in the next batch. sizes are the batches' sizes, in
// order of their runs (a transaction retried counts again).
type gatedBatcher struct {
	*batcher[*recordReq]
	entered chan struct{} // closed when the first batch is at the gate
	gate    chan struct{} // closed to let it go
	mu      sync.Mutex
	sizes   []int
}

func newGatedBatcher(e *Engine) *gatedBatcher {
	g := &gatedBatcher{entered: make(chan struct{}), gate: make(chan struct{})}
	var once sync.Once
	g.batcher = newBatcher(e.store, func(ctx context.Context, tx store.Tx, batch []*recordReq) error {
		g.mu.Lock()
		g.sizes = append(g.sizes, len(batch))
		g.mu.Unlock()
		once.Do(func() {
			close(g.entered)
			<-g.gate
		})
		return e.execRecords(ctx, tx, batch)
	})
	g.workers = 1
	return g
}

func (g *gatedBatcher) queued() int {
	g.mu.Lock() // the batcher's own lock guards its queue
	defer g.mu.Unlock()
	g.batcher.mu.Lock()
	defer g.batcher.mu.Unlock()
	return len(g.queue)
}

func (g *gatedBatcher) runs() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]int(nil), g.sizes...)
}

// record runs p (finalizing task when finalize) through g in a goroutine.
type recorded struct {
	r   *recordReq
	err error
}

func goRecord(g *gatedBatcher, ctx context.Context, p *store.StepRecordParams, task *taskertype.Task) chan recorded {
	out := make(chan recorded, 1)
	go func() {
		r := &recordReq{p: p, task: task}
		err := g.do(ctx, r)
		out <- recorded{r, err}
	}()
	return out
}

// Requests made while a batch runs go together in the next one: one
// transaction records every task's outcome and finalizes every task, and
// each request gets its own results.
func TestBatcherMergesConcurrentRequests(t *testing.T) {
	t.Parallel()
	for name, open := range batcherStores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := open(t)
			e, err := New(Config{Store: st, EnqueueHandler: EventEnqueueHandler{}})
			require.NoError(t, err)
			now := time.Now().UTC()
			const n = 20
			tasks := make([]*taskertype.Task, n)
			steps := make([]*store.ClaimedStep, n)
			for i := range n {
				tasks[i], steps[i] = runningTask(t, st, now)
			}
			g := newGatedBatcher(e)
			ctx := context.Background()
			outs := []chan recorded{goRecord(g, ctx, success(tasks[0], steps[0], now, `{"i":0}`), tasks[0])}
			<-g.entered
			for i := 1; i < n; i++ {
				outs = append(outs, goRecord(g, ctx, success(tasks[i], steps[i], now, fmt.Sprintf(`{"i":%d}`, i)), tasks[i]))
			}
			require.Eventually(t, func() bool { return g.queued() == n-1 }, 10*time.Second, time.Millisecond)
			close(g.gate)
			for i, out := range outs {
				got := <-out
				require.NoError(t, got.err, "request %d", i)
				require.Equal(t, []bool{true}, got.r.applied, "request %d", i)
				require.Equal(t, ActionComplete, got.r.v.d.Action, "request %d", i)
				require.True(t, got.r.tr.Changed, "request %d", i)
			}
			require.Equal(t, []int{1, n - 1}, g.runs(), "the queued requests ran as one batch")
			for i, task := range tasks {
				got, err := st.TaskGet(ctx, task.ID)
				require.NoError(t, err)
				require.Equal(t, taskertype.TaskStateComplete, got.State, "task %d", i)
				ss, err := st.StepList(ctx, task.ID)
				require.NoError(t, err)
				require.JSONEq(t, fmt.Sprintf(`{"i":%d}`, i), string(ss[0].Results), "task %d", i)
			}
		})
	}
}

// A request that fails its batch's transaction fails alone: the batch is
// run again one request at a time, and the others commit.
func TestBatcherFailureStaysWithItsRequest(t *testing.T) {
	t.Parallel()
	for name, open := range batcherStores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := open(t)
			e, err := New(Config{Store: st, EnqueueHandler: EventEnqueueHandler{}})
			require.NoError(t, err)
			now := time.Now().UTC()
			var tasks []*taskertype.Task
			var steps []*store.ClaimedStep
			for range 4 {
				task, c := runningTask(t, st, now)
				tasks, steps = append(tasks, task), append(steps, c)
			}
			g := newGatedBatcher(e)
			ctx := context.Background()
			first := goRecord(g, ctx, success(tasks[0], steps[0], now, `{}`), tasks[0])
			<-g.entered
			good1 := goRecord(g, ctx, success(tasks[1], steps[1], now, `{}`), tasks[1])
			bad := goRecord(g, ctx, success(tasks[2], steps[2], now, `{not json`), tasks[2])
			good2 := goRecord(g, ctx, success(tasks[3], steps[3], now, `{}`), nil)
			require.Eventually(t, func() bool { return g.queued() == 3 }, 10*time.Second, time.Millisecond)
			close(g.gate)
			require.NoError(t, (<-first).err)
			got := <-bad
			require.ErrorContains(t, got.err, "not valid JSON")
			for i, out := range []chan recorded{good1, good2} {
				got := <-out
				require.NoError(t, got.err, "good request %d", i)
				require.Equal(t, []bool{true}, got.r.applied, "good request %d", i)
			}
			require.Equal(t, []int{1, 3, 1, 1, 1}, g.runs(), "the failed batch of 3 ran again one by one")
			want := []taskertype.TaskState{taskertype.TaskStateComplete, taskertype.TaskStateComplete,
				taskertype.TaskStateInProgress, taskertype.TaskStateInProgress}
			wantStep := []taskertype.StepState{taskertype.StepStateComplete, taskertype.StepStateComplete,
				taskertype.StepStateInProgress, taskertype.StepStateComplete}
			for i, task := range tasks {
				got, err := st.TaskGet(ctx, task.ID)
				require.NoError(t, err)
				require.Equal(t, want[i], got.State, "task %d", i)
				ss, err := st.StepList(ctx, task.ID)
				require.NoError(t, err)
				require.Equal(t, wantStep[i], ss[0].State, "task %d", i)
			}
		})
	}
}

// A request whose context ended while it was queued is not run; close
// refuses new requests and returns only once the running batch is done.
func TestBatcherContextAndClose(t *testing.T) {
	t.Parallel()
	for name, open := range batcherStores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := open(t)
			e, err := New(Config{Store: st, EnqueueHandler: EventEnqueueHandler{}})
			require.NoError(t, err)
			now := time.Now().UTC()
			t0, c0 := runningTask(t, st, now)
			t1, c1 := runningTask(t, st, now)
			g := newGatedBatcher(e)
			first := goRecord(g, context.Background(), success(t0, c0, now, `{}`), nil)
			<-g.entered
			cctx, cancel := context.WithCancel(context.Background())
			gone := goRecord(g, cctx, success(t1, c1, now, `{}`), nil)
			require.Eventually(t, func() bool { return g.queued() == 1 }, 10*time.Second, time.Millisecond)
			cancel()
			closed := make(chan struct{})
			go func() {
				g.close()
				close(closed)
			}()
			// close waits for the running batch: it cannot return before the gate opens.
			require.Eventually(t, func() bool {
				g.batcher.mu.Lock()
				defer g.batcher.mu.Unlock()
				return g.closed
			}, 10*time.Second, time.Millisecond)
			select {
			case <-closed:
				t.Fatal("close returned while a batch was running")
			default:
			}
			close(g.gate)
			<-closed
			got := <-first
			require.NoError(t, got.err)
			require.Equal(t, []bool{true}, got.r.applied)
			require.ErrorIs(t, (<-gone).err, context.Canceled)
			ss, err := st.StepList(context.Background(), t1.ID)
			require.NoError(t, err)
			require.Equal(t, taskertype.StepStateInProgress, ss[0].State, "the cancelled request was not run")
			require.ErrorIs(t, g.do(context.Background(), &recordReq{p: success(t1, c1, now, `{}`)}), errBatcherClosed)
		})
	}
}

// A batch takes at most max requests; the caller whose request is done
// hands what is still queued to a goroutine, which runs it all.
func TestBatcherCapsBatchesAndHandsOverTheQueue(t *testing.T) {
	t.Parallel()
	st := testdb.Postgres(t)
	e, err := New(Config{Store: st, EnqueueHandler: EventEnqueueHandler{}})
	require.NoError(t, err)
	now := time.Now().UTC()
	const n = 6
	tasks := make([]*taskertype.Task, n)
	steps := make([]*store.ClaimedStep, n)
	for i := range n {
		tasks[i], steps[i] = runningTask(t, st, now)
	}
	g := newGatedBatcher(e)
	g.max = 2
	ctx := context.Background()
	outs := []chan recorded{goRecord(g, ctx, success(tasks[0], steps[0], now, `{}`), nil)}
	<-g.entered
	for i := 1; i < n; i++ {
		outs = append(outs, goRecord(g, ctx, success(tasks[i], steps[i], now, `{}`), nil))
	}
	require.Eventually(t, func() bool { return g.queued() == n-1 }, 10*time.Second, time.Millisecond)
	close(g.gate)
	for i, out := range outs {
		got := <-out
		require.NoError(t, got.err, "request %d", i)
		require.Equal(t, []bool{true}, got.r.applied, "request %d", i)
	}
	g.close() // waits for the goroutine that drained the queue
	require.Equal(t, []int{1, 2, 2, 1}, g.runs())
}
