package tasker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// fanOutTemplate lists n numbers, squares each in a step of its own and
// sums the squares.
const fanOutTemplate = `name: fanout
namespace_name: test
max_parallel_steps: 4
step_templates:
  - {name: list, handler_class: List}
  - name: square
    handler_class: Square
    depends_on_step: list
    default_retry_limit: 2
    fan_out: {over: list, path: data.items, max_items: 1000}
  - name: sum
    handler_class: Sum
    depends_on_step: square
`

// fanOutHandlers registers the handlers of fanOutTemplate on c. Square
// fails for the item the context's fail_item names (permanently), and
// records the most squares running at once; sum records what it received.
type fanOutHandlers struct {
	mu      sync.Mutex
	running atomic.Int32
	peak    atomic.Int32
	summed  map[int64]json.RawMessage
	inputs  map[string]json.RawMessage // "task/step" -> inputs
}

func registerFanOut(t *testing.T, c *tasker.Client) *fanOutHandlers {
	t.Helper()
	h := &fanOutHandlers{summed: map[int64]json.RawMessage{}, inputs: map[string]json.RawMessage{}}
	c.RegisterHandler("List", tasker.StepHandlerFunc(func(_ context.Context, sc *tasker.StepContext) (any, error) {
		var in struct {
			N     int  `json:"n"`
			Bad   bool `json:"bad"`
			Items any  `json:"items"`
		}
		if err := json.Unmarshal(sc.Context, &in); err != nil {
			return nil, err
		}
		if in.Bad {
			return map[string]any{"data": map[string]any{"items": "not a list"}}, nil
		}
		items := make([]int, in.N)
		for i := range items {
			items[i] = i
		}
		return map[string]any{"data": map[string]any{"items": items}}, nil
	}))
	c.RegisterHandler("Square", tasker.StepHandlerFunc(func(_ context.Context, sc *tasker.StepContext) (any, error) {
		n := h.running.Add(1)
		defer h.running.Add(-1)
		for p := h.peak.Load(); n > p && !h.peak.CompareAndSwap(p, n); p = h.peak.Load() {
		}
		var in struct {
			Item  int `json:"item"`
			Index int `json:"index"`
		}
		if err := json.Unmarshal(sc.Inputs, &in); err != nil {
			return nil, err
		}
		var ctx struct {
			FailItem *int `json:"fail_item"`
			Gate     bool `json:"gate"`
		}
		_ = json.Unmarshal(sc.Context, &ctx)
		if ctx.Gate && in.Index < 4 {
			// The first four wait for each other: they must be running at once.
			deadline := time.Now().Add(30 * time.Second)
			for h.running.Load() < 4 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
		}
		h.mu.Lock()
		h.inputs[fmt.Sprintf("%d/%s", sc.TaskID, sc.StepName)] = sc.Inputs
		h.mu.Unlock()
		if ctx.FailItem != nil && *ctx.FailItem == in.Item {
			return nil, tasker.Permanent(fmt.Errorf("item %d is cursed", in.Item))
		}
		return map[string]int{"square": in.Item * in.Item, "index": in.Index}, nil
	}))
	c.RegisterHandler("Sum", tasker.StepHandlerFunc(func(_ context.Context, sc *tasker.StepContext) (any, error) {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.summed[sc.TaskID] = sc.DependencyResults["square"]
		return nil, nil
	}))
	_, err := c.AddTemplate("f.yml", []byte(fanOutTemplate))
	require.NoError(t, err)
	return h
}

// runFanOut creates and runs a fanout task with context ctxJSON.
func runFanOut(t *testing.T, c *tasker.Client, ctxJSON string) (int64, *tasker.HandleResult) {
	t.Helper()
	ctx := context.Background()
	task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "fanout",
		Context: json.RawMessage(ctxJSON)})
	require.NoError(t, err)
	res, err := c.RunTask(ctx, task.ID)
	require.NoError(t, err)
	return task.ID, res
}

// A fan_out step becomes one step per item (name[i], inputs item and
// index), at most max_parallel_steps of them running at once, and the step
// depending on it receives their results in item order: for 0, 1 and
// 1,000 items.
func TestFanOut(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		h := registerFanOut(t, c)
		expanded, unsubscribe := c.Subscribe(tasker.EventStepExpanded)
		defer unsubscribe()
		for _, n := range []int{0, 1, 1000} {
			id, res := runFanOut(t, c, fmt.Sprintf(`{"n": %d, "gate": %t}`, n, n == 1000))
			require.Equal(t, tasker.TaskState("complete"), res.Status, "%d items", n)

			var got []struct{ Square, Index int }
			h.mu.Lock()
			require.NoError(t, json.Unmarshal(h.summed[id], &got), "%d items: %s", n, h.summed[id])
			h.mu.Unlock()
			require.Len(t, got, n)
			for i, g := range got {
				require.Equal(t, i*i, g.Square, "item %d", i)
				require.Equal(t, i, g.Index)
			}
			steps := stepsOf(t, c, id)
			require.Len(t, steps, 3+n)
			byName := map[string]*tasker.Step{}
			for _, st := range steps {
				byName[st.Name] = st
				require.Equal(t, tasker.StepState("complete"), st.State, st.Name)
			}
			sq := byName["square"]
			require.Equal(t, 1, sq.Attempts, "the expansion gives its attempt back; the collection counts one")
			if n > 0 {
				last := byName[fmt.Sprintf("square[%d]", n-1)]
				require.NotNil(t, last)
				require.Equal(t, "Square", last.HandlerClass)
				require.Equal(t, 2, last.MaxAttempts, "children keep the step's retry limit")
				require.ElementsMatch(t, []string{"list"}, last.Parents)
				require.Len(t, sq.Parents, 1+n)
				h.mu.Lock()
				require.JSONEq(t, fmt.Sprintf(`{"item": %d, "index": %d}`, n-1, n-1),
					string(h.inputs[fmt.Sprintf("%d/square[%d]", id, n-1)]))
				h.mu.Unlock()
				select {
				case ev := <-expanded:
					require.Equal(t, id, ev.TaskID)
					require.EqualValues(t, n, ev.Data["items"])
				case <-time.After(time.Minute):
					t.Fatal("no step.expanded event")
				}
			}
		}
		require.Equal(t, int32(4), h.peak.Load(), "children run at once, bounded by max_parallel_steps")
	})
}

// A list over max_items, or a value that is not a list, fails the fan-out
// step permanently with a message naming the step and the path; a child
// failing for good fails the task like any step, and the step depending
// on the fan-out never runs.
func TestFanOutFailures(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		h := registerFanOut(t, c)
		errorOf := func(id int64, name string) string {
			for _, st := range stepsOf(t, c, id) {
				if st.Name == name {
					require.Equal(t, tasker.StepState("error"), st.State, name)
					var doc struct{ Kind, Message string }
					require.NoError(t, json.Unmarshal(st.Error, &doc))
					require.Equal(t, "permanent", doc.Kind)
					return doc.Message
				}
			}
			t.Fatalf("no step %s", name)
			return ""
		}
		id, res := runFanOut(t, c, `{"n": 1001}`)
		require.Equal(t, tasker.TaskState("error"), res.Status)
		require.Contains(t, errorOf(id, "square"),
			"step square fans out over data.items in the result of list: 1001 items, more than its max_items 1000")
		require.Len(t, stepsOf(t, c, id), 3, "nothing expanded")

		id, res = runFanOut(t, c, `{"bad": true}`)
		require.Equal(t, tasker.TaskState("error"), res.Status)
		require.Contains(t, errorOf(id, "square"), "which is a string, not a list")

		id, res = runFanOut(t, c, `{"n": 5, "fail_item": 3}`)
		require.Equal(t, tasker.TaskState("error"), res.Status)
		require.Contains(t, errorOf(id, "square[3]"), "item 3 is cursed")
		h.mu.Lock()
		_, summed := h.summed[id]
		h.mu.Unlock()
		require.False(t, summed)
	})
}

// A fan_out step's when decides once, before the expansion: false skips the
// step with no children, and its dependents run.
func TestFanOutWhenFalse(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		c.RegisterHandler("X", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) {
			return []int{1, 2, 3}, nil
		}))
		_, err := c.AddTemplate("w.yml", []byte(`name: fanwhen
namespace_name: test
step_templates:
  - {name: list, handler_class: X}
  - {name: each, handler_class: X, depends_on_step: list, when: context.go, fan_out: {over: list}}
  - {name: after, handler_class: X, depends_on_step: each}
`))
		require.NoError(t, err)
		for _, run := range []bool{false, true} {
			task, _, err := c.InitializeTask(context.Background(), &tasker.TaskRequest{Namespace: "test", Name: "fanwhen",
				Context: json.RawMessage(fmt.Sprintf(`{"go": %t}`, run))})
			require.NoError(t, err)
			res, err := c.RunTask(context.Background(), task.ID)
			require.NoError(t, err)
			require.Equal(t, tasker.TaskState("complete"), res.Status)
			states := map[string]tasker.StepState{}
			for _, st := range stepsOf(t, c, task.ID) {
				states[st.Name] = st.State
			}
			if run {
				require.Len(t, states, 6)
				require.Equal(t, tasker.StepState("complete"), states["each[2]"])
			} else {
				require.Equal(t, map[string]tasker.StepState{"list": "complete", "each": "skipped", "after": "complete"}, states)
			}
		}
	})
}

// The pull API expands and collects fan-outs itself: a worker is handed the
// children (in the same claim as the expansion) and then the dependent,
// which receives their results in order.
func TestFanOutExternalWorker(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openWorkerClient(t, url)
		_, err := c.AddTemplate("f.yml", []byte(fanOutTemplate))
		require.NoError(t, err)
		ctx := context.Background()
		task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "fanout",
			Context: json.RawMessage(`{"n": 6}`)})
		require.NoError(t, err)
		w := c.Worker()
		owner := "ruby-worker"
		report := func(steps []tasker.ExternalStep, result func(tasker.ExternalStep) string) {
			var rs []tasker.ExternalResult
			for _, st := range steps {
				rs = append(rs, tasker.ExternalResult{StepID: st.StepID, Attempt: st.Attempt, Success: true,
					Results: json.RawMessage(result(st))})
			}
			rep, err := w.ReportResults(ctx, tasker.ReportParams{TaskID: task.ID, Owner: owner, Results: rs})
			require.NoError(t, err)
			for _, r := range rep.Results {
				require.Equal(t, "recorded", r.Status)
			}
		}
		reason := func(step string) string {
			rs, err := c.Explain(ctx, task.ID)
			require.NoError(t, err)
			for _, r := range rs {
				if r.Name == step {
					return r.Reason
				}
			}
			t.Fatalf("no step %s in explain", step)
			return ""
		}
		require.Contains(t, reason("square"), "; fans out over data.items in the result of list (at most 1000 items)")
		claim, err := w.ClaimSteps(ctx, tasker.ClaimParams{TaskID: task.ID, Owner: owner})
		require.NoError(t, err)
		require.Len(t, claim.Steps, 1)
		report(claim.Steps, func(tasker.ExternalStep) string { return `{"data": {"items": ["a", "b", "c", "d", "e", "f"]}}` })

		var names []string
		for len(names) < 6 {
			claim, err = w.ClaimSteps(ctx, tasker.ClaimParams{TaskID: task.ID, Owner: owner})
			require.NoError(t, err)
			require.NotEmpty(t, claim.Steps)
			require.LessOrEqual(t, len(claim.Steps), 4, "max_parallel_steps")
			for _, st := range claim.Steps {
				names = append(names, st.Name)
				var in struct {
					Item  string `json:"item"`
					Index int    `json:"index"`
				}
				require.NoError(t, json.Unmarshal(st.Inputs, &in))
				require.Equal(t, fmt.Sprintf("square[%d]", in.Index), st.Name)
				require.Equal(t, string(rune('a'+in.Index)), in.Item)
			}
			report(claim.Steps, func(st tasker.ExternalStep) string {
				var in struct{ Item string }
				_ = json.Unmarshal(st.Inputs, &in)
				return fmt.Sprintf("%q", in.Item+in.Item)
			})
			if len(names) == 4 {
				require.Equal(t, "waiting for 2 of 6 fan-out items (square[0]..square[5]); then collects their results",
					reason("square"))
			}
		}
		require.ElementsMatch(t, []string{"square[0]", "square[1]", "square[2]", "square[3]", "square[4]", "square[5]"}, names)

		claim, err = w.ClaimSteps(ctx, tasker.ClaimParams{TaskID: task.ID, Owner: owner})
		require.NoError(t, err)
		require.Len(t, claim.Steps, 1, "the fan-out is collected, its dependent handed out")
		require.Equal(t, "sum", claim.Steps[0].Name)
		require.JSONEq(t, `["aa", "bb", "cc", "dd", "ee", "ff"]`, string(claim.Steps[0].DependencyResults["square"]))
		report(claim.Steps, func(tasker.ExternalStep) string { return `{}` })
		fin, err := w.Finalize(ctx, task.ID, owner)
		require.NoError(t, err)
		require.Equal(t, tasker.TaskState("complete"), fin.Status)
		require.Equal(t, "complete: collected the results of 6 fan-out items", reason("square"))
	})
}
