package tasker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/taskertype"
)

// concurrencyTemplate is a one-step template whose tasks share a key per
// account, at most limit running at once, with policy.
func concurrencyTemplate(name string, limit int, policy string) string {
	return fmt.Sprintf(`name: %s
namespace_name: test
concurrency:
  key: "acct-${context.account_id}"
  limit: %d
  policy: %s
step_templates:
  - {name: work, handler_class: Hold}
`, name, limit, policy)
}

// holder is a step handler that blocks each task's attempt until the test
// releases that task, and records how many tasks of each account were in a
// handler at once.
type holder struct {
	mu      sync.Mutex
	release map[int64]chan struct{}
	entered map[int64]int    // task -> attempts entered
	acct    map[int64]string // task -> its account
	running map[string]int
	peak    map[string]int
}

func newHolder() *holder {
	return &holder{release: map[int64]chan struct{}{}, entered: map[int64]int{}, acct: map[int64]string{},
		running: map[string]int{}, peak: map[string]int{}}
}

func (h *holder) gate(taskID int64) chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	ch, ok := h.release[taskID]
	if !ok {
		ch = make(chan struct{})
		h.release[taskID] = ch
	}
	return ch
}

func (h *holder) Handle(ctx context.Context, sc *tasker.StepContext) (any, error) {
	var c struct {
		AccountID json.Number `json:"account_id"`
	}
	if err := json.Unmarshal(sc.Context, &c); err != nil {
		return nil, err
	}
	acct := c.AccountID.String()
	gate := h.gate(sc.TaskID)
	h.mu.Lock()
	h.entered[sc.TaskID]++
	h.acct[sc.TaskID] = acct
	h.running[acct]++
	h.peak[acct] = max(h.peak[acct], h.running[acct])
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.running[acct]--
		h.mu.Unlock()
	}()
	select {
	case <-gate:
		return "done", nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (h *holder) open(taskID int64) { close(h.gate(taskID)) }

func (h *holder) hasEntered(taskID int64) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.entered[taskID] > 0
}

func (h *holder) peakOf(acct string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.peak[acct]
}

// startRun runs c's runner with workers until the test ends.
func startRun(t *testing.T, c *tasker.Client, workers int) {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, workers) }()
	t.Cleanup(func() {
		stop()
		require.NoError(t, <-done)
	})
}

func createAccountTask(t *testing.T, c *tasker.Client, name string, acct int) int64 {
	t.Helper()
	task, _, err := c.InitializeTask(context.Background(), &tasker.TaskRequest{Namespace: "test", Name: name,
		Context: json.RawMessage(fmt.Sprintf(`{"account_id": %d}`, acct))})
	require.NoError(t, err)
	return task.ID
}

// explainSays waits until explain gives a step of the task a reason
// containing want.
func explainSays(t *testing.T, c *tasker.Client, taskID int64, want string) {
	t.Helper()
	var last string
	require.Eventually(t, func() bool {
		rs, err := c.Explain(context.Background(), taskID)
		if err != nil || len(rs) == 0 {
			return false
		}
		last = rs[0].Reason
		return strings.Contains(last, want)
	}, time.Minute, 20*time.Millisecond, "explain of task %d never said %q (last: %q)", taskID, want, last)
}

// With policy queue, a second task of an account waits while the first
// runs (explain says why), another account's task runs meanwhile, and the
// waiting task starts as soon as the first finishes: the finish wakes it
// (the parked queue record is otherwise due only after 5 minutes, past
// this test's waits).
func TestConcurrencyKeyQueues(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		h := newHolder()
		c.RegisterHandler("Hold", h)
		_, err := c.AddTemplate("c.yml", []byte(concurrencyTemplate("queued", 1, "queue")))
		require.NoError(t, err)
		acct42 := []int64{createAccountTask(t, c, "queued", 42), createAccountTask(t, c, "queued", 42),
			createAccountTask(t, c, "queued", 42)}
		other := createAccountTask(t, c, "queued", 7)
		startRun(t, c, 4)

		// Whichever task of account 42 was admitted first runs; the
		// other two wait for it (explain says why) and the other
		// account's task runs meanwhile.
		var first int64
		require.Eventually(t, func() bool {
			for _, id := range acct42 {
				if h.hasEntered(id) {
					first = id
				}
			}
			return first != 0 && h.hasEntered(other)
		}, time.Minute, 10*time.Millisecond, "the first task of each account runs")
		var waiting []int64
		for _, id := range acct42 {
			if id != first {
				waiting = append(waiting, id)
				explainSays(t, c, id, "waiting: concurrency key acct-42 at limit 1")
				d, err := c.Task(context.Background(), id)
				require.NoError(t, err)
				require.Equal(t, tasker.TaskState("pending"), d.State)
			}
		}

		h.open(first)
		h.open(other)
		waitTaskState(t, c, first, "complete")
		// One of the waiting tasks is woken and admitted; release both.
		require.Eventually(t, func() bool { return h.hasEntered(waiting[0]) || h.hasEntered(waiting[1]) }, time.Minute,
			10*time.Millisecond, "a waiting task starts once the first finished")
		h.open(waiting[0])
		h.open(waiting[1])
		waitTaskState(t, c, waiting[0], "complete")
		waitTaskState(t, c, waiting[1], "complete")
		waitTaskState(t, c, other, "complete")
		require.Equal(t, 1, h.peakOf("42"), "tasks of one key never ran together")
	})
}

// With policy cancel_newest, a task whose key is at its limit is cancelled
// with a reason instead of waiting.
func TestConcurrencyKeyCancelNewest(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		h := newHolder()
		c.RegisterHandler("Hold", h)
		_, err := c.AddTemplate("c.yml", []byte(concurrencyTemplate("newest", 1, "cancel_newest")))
		require.NoError(t, err)
		first := createAccountTask(t, c, "newest", 42)
		startRun(t, c, 2)
		require.Eventually(t, func() bool { return h.hasEntered(first) }, time.Minute, 10*time.Millisecond)
		second := createAccountTask(t, c, "newest", 42)
		d := waitTaskState(t, c, second, "cancelled")
		require.Equal(t, tasker.StepState("cancelled"), d.Steps[0].State)
		trs, _, err := c.Transitions(context.Background(), second)
		require.NoError(t, err)
		require.Contains(t, trs[len(trs)-1].Reason, "concurrency key acct-42 at limit 1 (policy cancel_newest)")
		require.False(t, h.hasEntered(second))
		h.open(first)
		waitTaskState(t, c, first, "complete")
	})
}

// With policy cancel_oldest, the running task of the key is cancelled (its
// step too) and the new task runs.
func TestConcurrencyKeyCancelOldest(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		h := newHolder()
		c.RegisterHandler("Hold", h)
		_, err := c.AddTemplate("c.yml", []byte(concurrencyTemplate("oldest", 1, "cancel_oldest")))
		require.NoError(t, err)
		first := createAccountTask(t, c, "oldest", 42)
		startRun(t, c, 2)
		require.Eventually(t, func() bool { return h.hasEntered(first) }, time.Minute, 10*time.Millisecond)
		second := createAccountTask(t, c, "oldest", 42)
		d := waitTaskState(t, c, first, "cancelled")
		require.Equal(t, tasker.StepState("cancelled"), d.Steps[0].State)
		trs, _, err := c.Transitions(context.Background(), first)
		require.NoError(t, err)
		require.Contains(t, trs[len(trs)-1].Reason, fmt.Sprintf("cancelled to make room for task %d", second))
		require.Eventually(t, func() bool { return h.hasEntered(second) }, time.Minute, 10*time.Millisecond)
		h.open(second)
		h.open(first) // its result is refused: the step was cancelled
		waitTaskState(t, c, second, "complete")
		d = waitTaskState(t, c, first, "cancelled")
		require.Equal(t, tasker.StepState("cancelled"), d.Steps[0].State)
	})
}

// A context that cannot give the key a value fails the request with a
// typed error naming the reference; nothing is created.
func TestConcurrencyKeyMissingFromContext(t *testing.T) {
	t.Parallel()
	c := openClient(t, "sqlite:"+testdb.SQLitePath(t))
	c.RegisterHandler("Hold", newHolder())
	_, err := c.AddTemplate("c.yml", []byte(concurrencyTemplate("missing", 1, "queue")))
	require.NoError(t, err)
	_, _, err = c.InitializeTask(context.Background(), &tasker.TaskRequest{Namespace: "test", Name: "missing",
		Context: json.RawMessage(`{"other": 1}`)})
	var reqErr *taskertype.RequestError
	require.True(t, errors.As(err, &reqErr), "got %v", err)
	require.Contains(t, reqErr.Error(), "${context.account_id} is missing")
}

// Several engines on one PostgreSQL database, each with its own runner,
// never run more tasks of a key at once than its limit, and run them all.
func TestConcurrencyKeyAcrossEngines(t *testing.T) {
	t.Parallel()
	url := testdb.PostgresURL(t)
	var mu sync.Mutex
	running, peak, done := 0, 0, 0
	handler := tasker.StepHandlerFunc(func(ctx context.Context, sc *tasker.StepContext) (any, error) {
		mu.Lock()
		running++
		peak = max(peak, running)
		mu.Unlock()
		time.Sleep(20 * time.Millisecond) // simulated work (not a wait for a condition), long enough for overlaps
		mu.Lock()
		running--
		done++
		mu.Unlock()
		return "ok", nil
	})
	clients := make([]*tasker.Client, 3)
	for i := range clients {
		clients[i] = openClient(t, url)
		clients[i].RegisterHandler("Hold", handler)
		_, err := clients[i].AddTemplate("c.yml", []byte(concurrencyTemplate("shared", 2, "queue")))
		require.NoError(t, err)
	}
	const tasks = 30
	ids := make([]int64, tasks)
	for i := range ids {
		ids[i] = createAccountTask(t, clients[i%len(clients)], "shared", 42)
	}
	for _, c := range clients {
		startRun(t, c, 4)
	}
	for _, id := range ids {
		waitTaskState(t, clients[0], id, "complete")
	}
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, tasks, done)
	require.LessOrEqual(t, peak, 2, "at most limit tasks of the key ran at once")
	require.Equal(t, 2, peak, "the limit, not one, ran at once")
}

// The pull API (Ruby workers) honours the same limit: a claim of a second
// task of the key hands out nothing and says why; once the first finishes
// (its result reported and the task finalized), the second can be claimed.
func TestConcurrencyKeyPullAPI(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openWorkerClient(t, url)
		_, err := c.AddTemplate("c.yml", []byte(concurrencyTemplate("pulled", 1, "queue")))
		require.NoError(t, err)
		ctx := context.Background()
		first := createAccountTask(t, c, "pulled", 42)
		second := createAccountTask(t, c, "pulled", 42)
		w := c.Worker()
		owner := "ruby-worker"
		claim, err := w.ClaimSteps(ctx, tasker.ClaimParams{TaskID: first, Owner: owner})
		require.NoError(t, err)
		require.Len(t, claim.Steps, 1)

		held, err := w.ClaimSteps(ctx, tasker.ClaimParams{TaskID: second, Owner: owner})
		require.NoError(t, err)
		require.Empty(t, held.Steps)
		require.False(t, held.Runnable)
		require.Equal(t, "waiting: concurrency key acct-42 at limit 1", held.Reason)
		require.Equal(t, tasker.TaskState("pending"), held.Task.Status)

		rep, err := w.ReportResults(ctx, tasker.ReportParams{TaskID: first, Owner: owner,
			Results: []tasker.ExternalResult{{StepID: claim.Steps[0].StepID, Attempt: claim.Steps[0].Attempt, Success: true,
				Results: json.RawMessage(`"done"`)}}})
		require.NoError(t, err)
		require.Equal(t, "recorded", rep.Results[0].Status)
		res, err := w.Finalize(ctx, first, owner)
		require.NoError(t, err)
		require.Equal(t, tasker.TaskState("complete"), res.Status)

		claim, err = w.ClaimSteps(ctx, tasker.ClaimParams{TaskID: second, Owner: owner})
		require.NoError(t, err)
		require.Len(t, claim.Steps, 1, "the slot freed by the first task")
	})
}

// enteredOpen lists the tasks whose attempt is in the handler and not yet
// released, per account.
func (h *holder) enteredOpen() map[string][]int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := map[string][]int64{}
	for id := range h.entered {
		select {
		case <-h.release[id]:
		default:
			out[h.acct[id]] = append(out[h.acct[id]], id)
		}
	}
	return out
}

// Admission in claim batches, across engines: three engines on one
// PostgreSQL database, each runner handling 8 tasks at once, so that a
// claim batch holds several tasks of one key and batches of different
// engines admit the same keys at the same moment. 48 tasks of 3 keys
// (limit 2, queue) are all due at once; each attempt is held in its
// handler until the test has seen a full wave (each key at its limit, or
// its last tasks), then released. A batch that counted wrong (two tasks of
// a key admitted on one free slot) or two engines admitting one key without
// excluding each other would put a third task of a key in a handler: the
// peak would exceed the limit.
func TestConcurrencyKeyBatchedAdmission(t *testing.T) {
	t.Parallel()
	url := testdb.PostgresURL(t)
	h := newHolder()
	const keys, limit, tasks, engines = 3, 2, 48, 3
	clients := make([]*tasker.Client, engines)
	for i := range clients {
		clients[i] = openClient(t, url)
		clients[i].RegisterHandler("Hold", h)
		_, err := clients[i].AddTemplate("c.yml", []byte(concurrencyTemplate("batched", limit, "queue")))
		require.NoError(t, err)
	}
	left := map[string]int{}
	for i := range tasks {
		createAccountTask(t, clients[i%engines], "batched", i%keys)
		left[fmt.Sprint(i%keys)]++
	}
	for _, c := range clients {
		startRun(t, c, 8)
	}
	for done := 0; done < tasks; {
		var open map[string][]int64
		// Filled, or over the limit (fails at once below).
		filled := func() bool {
			open = h.enteredOpen()
			full := true
			for acct, n := range left {
				if len(open[acct]) > limit {
					return true
				}
				full = full && len(open[acct]) == min(n, limit)
			}
			return full
		}
		if !assert.Eventually(t, filled, 2*time.Minute, 5*time.Millisecond) {
			t.Fatalf("a wave never filled: left %v, in handlers %v", left, open)
		}
		for acct, ids := range open {
			require.LessOrEqual(t, len(ids), limit, "account %s: tasks %v in handlers at once", acct, ids)
		}
		for acct, ids := range open {
			for _, id := range ids {
				h.open(id)
				left[acct]--
				done++
			}
		}
	}
	for acct := range keys {
		require.Equal(t, limit, h.peakOf(fmt.Sprint(acct)), "account %d: at most (and up to) its limit at once", acct)
	}
}
