package tasker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/taskertype"
)

const wideYAML = `name: wide
namespace_name: test
version: 1.0.0
max_parallel_steps: 6
step_templates:
  - name: root
    handler_class: Work
`

func wideTemplate(n int) string {
	var b strings.Builder
	b.WriteString(wideYAML)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - name: leaf%03d\n    handler_class: Work\n    depends_on_step: root\n", i)
	}
	b.WriteString("  - name: join\n    handler_class: Work\n    depends_on_steps: [")
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "leaf%03d", i)
	}
	b.WriteString("]\n")
	return b.String()
}

// countingHandler counts attempts per step and flags overlapping attempts.
type countingHandler struct {
	mu      sync.Mutex
	runs    map[string]int
	active  map[string]bool
	overlap int
	sleep   time.Duration
}

func (h *countingHandler) Handle(ctx context.Context, sc *tasker.StepContext) (any, error) {
	h.mu.Lock()
	if h.runs == nil {
		h.runs, h.active = map[string]int{}, map[string]bool{}
	}
	key := fmt.Sprintf("%d/%s", sc.TaskID, sc.StepName)
	h.runs[key]++
	if h.active[key] {
		h.overlap++
	}
	h.active[key] = true
	h.mu.Unlock()
	time.Sleep(h.sleep)
	h.mu.Lock()
	h.active[key] = false
	h.mu.Unlock()
	return map[string]any{"ok": true}, nil
}

// Two coordinators (separate engines, as in separate processes) handle the
// same task at the same time on PostgreSQL: no step attempt runs twice.
func TestTwoCoordinatorsSameTask(t *testing.T) {
	t.Parallel()
	url := testdb.PostgresURL(t)
	h := &countingHandler{sleep: 20 * time.Millisecond}
	var clients []*tasker.Client
	for i := 0; i < 2; i++ {
		c := openClient(t, url)
		_, err := c.AddTemplate("wide.yml", []byte(wideTemplate(40)))
		require.NoError(t, err)
		c.RegisterHandler("Work", h)
		clients = append(clients, c)
	}
	ctx := context.Background()
	for round := 0; round < 3; round++ {
		task, _, err := clients[0].InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "wide"})
		require.NoError(t, err)
		var wg sync.WaitGroup
		results := make([]*tasker.HandleResult, 2)
		for i, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := c.RunTask(ctx, task.ID)
				require.NoError(t, err)
				results[i] = res
			}()
		}
		wg.Wait()
		detail, err := clients[0].Task(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, tasker.TaskState("complete"), detail.State)
		for _, st := range detail.Steps {
			require.Equal(t, 1, st.Attempts, "step %s", st.Name)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	require.Zero(t, h.overlap)
	require.Len(t, h.runs, 3*42)
	for k, n := range h.runs {
		require.Equal(t, 1, n, "step %s ran %d times", k, n)
	}
}

func countTasks(t *testing.T, c *tasker.Client) int {
	t.Helper()
	all, err := c.ListTasks(context.Background(), &tasker.TaskFilter{Limit: 1000})
	require.NoError(t, err)
	return len(all)
}

const schemaYAML = `name: checkout
namespace_name: shop
version: 1.0.0
schema:
  type: object
  required: [order_id, email]
  properties:
    order_id: {type: integer}
    email: {type: string}
step_templates:
  - name: charge
    handler_class: Charge
  - name: notify
    handler_class: Notify
    depends_on_step: charge
    skippable: true
`

func TestInitializeBadInputWritesNothing(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		_, err := c.AddTemplate("checkout.yml", []byte(schemaYAML))
		require.NoError(t, err)
		c.RegisterHandler("Charge", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) { return nil, nil }))
		ctx := context.Background()
		cases := []struct {
			name    string
			req     tasker.TaskRequest
			is      error
			message []string
		}{
			{"unknown template", tasker.TaskRequest{Namespace: "shop", Name: "chekout"}, tasker.ErrNotFound,
				[]string{"shop/chekout", "not found"}},
			{"unknown version lists available", tasker.TaskRequest{Namespace: "shop", Name: "checkout", Version: "9.9.9"},
				tasker.ErrNotFound, []string{"shop/checkout@9.9.9", "shop/checkout@1.0.0"}},
			{"context violates schema", tasker.TaskRequest{Namespace: "shop", Name: "checkout",
				Context: json.RawMessage(`{"order_id":"x"}`)}, tasker.ErrInvalidContext, []string{"/order_id", "email"}},
			{"context not JSON", tasker.TaskRequest{Namespace: "shop", Name: "checkout",
				Context: json.RawMessage(`{"order_id":`)}, tasker.ErrInvalidContext, []string{"shop/checkout@1.0.0"}},
			{"oversized context", tasker.TaskRequest{Namespace: "shop", Name: "checkout",
				Context: json.RawMessage(`{"order_id":1,"email":"` + strings.Repeat("x", 2<<20) + `"}`)}, tasker.ErrInvalidContext, []string{"more than the limit of 1048576 bytes"}},
			{"missing handler", tasker.TaskRequest{Namespace: "shop", Name: "checkout",
				Context: json.RawMessage(`{"order_id":1,"email":"a@b"}`)}, tasker.ErrInvalidRequest, []string{`"notify"`, "Notify"}},
			{"unknown bypass step", tasker.TaskRequest{Namespace: "shop", Name: "checkout", BypassSteps: []string{"nope"},
				Context: json.RawMessage(`{"order_id":1,"email":"a@b"}`)}, tasker.ErrInvalidRequest, []string{`"nope"`, "bypass_steps"}},
			{"bypass of non-skippable step", tasker.TaskRequest{Namespace: "shop", Name: "checkout", BypassSteps: []string{"charge"},
				Context: json.RawMessage(`{"order_id":1,"email":"a@b"}`)}, tasker.ErrInvalidRequest, []string{`"charge"`, "not skippable"}},
			{"name with SQL", tasker.TaskRequest{Namespace: "shop", Name: "x'; DROP TABLE tasker_tasks; --"}, tasker.ErrNotFound,
				[]string{"DROP TABLE"}},
		}
		for _, tc := range cases {
			_, _, err := c.InitializeTask(ctx, &tc.req)
			require.Error(t, err, tc.name)
			require.True(t, errors.Is(err, tc.is), "%s: %v", tc.name, err)
			for _, m := range tc.message {
				require.Contains(t, err.Error(), m, tc.name)
			}
		}
		var cv *taskertype.ContextValidationError
		_, _, err = c.InitializeTask(ctx, &cases[2].req)
		require.True(t, errors.As(err, &cv))
		require.GreaterOrEqual(t, len(cv.Violations), 2, "every failing path is listed: %v", cv.Violations)
		require.Zero(t, countTasks(t, c), "nothing was written")
		q, err := c.Queue(ctx)
		require.NoError(t, err)
		require.Empty(t, q)

		// With the handler registered and notify bypassed, the same request works.
		task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "shop", Name: "checkout", BypassSteps: []string{"notify"},
			Context: json.RawMessage(`{"order_id":1,"email":"a@b"}`)})
		require.NoError(t, err)
		res, err := c.RunTask(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, tasker.TaskState("complete"), res.Status)
	})
}

func TestLoadTemplatesReportsEveryBadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "good.yml"), []byte(schemaYAML), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cycle.yml"), []byte(`name: c
step_templates:
  - {name: a, handler_class: H, depends_on_step: b}
  - {name: b, handler_class: H, depends_on_step: a}
`), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "syntax.yaml"), []byte("name: [unclosed\n"), 0o600))
	_, err := tasker.Open(context.Background(), tasker.Config{DatabaseURL: "sqlite:" + testdb.SQLitePath(t), TemplatesDir: dir})
	require.Error(t, err)
	require.True(t, errors.Is(err, tasker.ErrInvalidTemplate))
	require.Contains(t, err.Error(), "cycle.yml")
	require.Contains(t, err.Error(), "cycle")
	require.Contains(t, err.Error(), "syntax.yaml:")
}

func TestEventsInOrder(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		_, err := c.AddTemplate("linear.yml", []byte(templateYAML(newShape("ev", "a", "b<a"), 3, nil,
			map[string]string{"b": "{fail_times: 1, retry_after: 1}"})))
		require.NoError(t, err)
		c.RegisterHandler("Recorder", &recorder{})
		events, cancel := c.Subscribe()
		defer cancel()
		ctx := context.Background()
		task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "ev"})
		require.NoError(t, err)
		_, err = c.RunTask(ctx, task.ID)
		require.NoError(t, err)
		var got []string
		timeout := time.After(30 * time.Second)
		for len(got) == 0 || got[len(got)-1] != "task.completed" {
			select {
			case ev := <-events:
				require.Equal(t, task.ID, ev.TaskID)
				name := string(ev.Kind)
				if ev.StepName != "" {
					name += ":" + ev.StepName
				}
				got = append(got, name)
			case <-timeout:
				t.Fatalf("events so far: %v", got)
			}
		}
		require.Equal(t, []string{
			"task.initialized", "task.enqueue", "task.started",
			"step.started:a", "step.completed:a",
			"step.started:b", "step.failed:b", "step.retry_scheduled:b",
			"task.reenqueue", "task.started", "step.started:b", "step.completed:b", "task.completed",
		}, got)
	})
}

func TestManualOperations(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		var failing atomic.Bool
		failing.Store(true)
		c.RegisterHandler("Flaky", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) {
			if failing.Load() {
				return nil, tasker.Permanent(errors.New("card declined"))
			}
			return map[string]any{"charged": true}, nil
		}))
		c.RegisterHandler("Ok", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) { return "ok", nil }))
		_, err := c.AddTemplate("m.yml", []byte(`name: manual
namespace_name: test
step_templates:
  - {name: charge, handler_class: Flaky}
  - {name: ship, handler_class: Ok, depends_on_step: charge}
`))
		require.NoError(t, err)
		ctx := context.Background()
		task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "manual"})
		require.NoError(t, err)
		res, err := c.RunTask(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, tasker.TaskState("error"), res.Status)

		exp, err := c.Explain(ctx, task.ID)
		require.NoError(t, err)
		require.Contains(t, exp[0].Reason, "failed after 1 of 3")
		require.Contains(t, exp[1].Reason, "task is error")

		// Retry a complete step: refused, nothing changes.
		_, err = c.RetrySteps(ctx, task.ID, []string{"ship"}, tasker.Actor{Who: "ops"})
		require.True(t, errors.Is(err, tasker.ErrInvalidTransition), "%v", err)
		_, err = c.RetrySteps(ctx, task.ID, []string{"nope"}, tasker.Actor{Who: "ops"})
		require.True(t, errors.Is(err, tasker.ErrNotFound), "%v", err)

		_, _, err = c.Transitions(ctx, task.ID+1000)
		require.True(t, errors.Is(err, tasker.ErrNotFound), "%v", err)

		failing.Store(false)
		// Naming a step twice retries it once.
		retried, err := c.RetrySteps(ctx, task.ID, []string{"charge", "charge"}, tasker.Actor{Who: "ops@example.com", Reason: "card updated"})
		require.NoError(t, err)
		require.Equal(t, []string{"charge"}, retried)
		res, err = c.RunTask(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, tasker.TaskState("complete"), res.Status)
		taskTrs, stepTrs, err := c.Transitions(ctx, task.ID)
		require.NoError(t, err)
		var retryRow *tasker.Transition
		for _, tr := range taskTrs {
			if tr.Event == "retry" {
				retryRow = tr
			}
		}
		require.NotNil(t, retryRow)
		require.Equal(t, "ops@example.com", retryRow.Actor)
		require.Equal(t, "card updated", retryRow.Reason)
		require.Equal(t, "error", retryRow.FromState)
		found := false
		for _, tr := range stepTrs {
			if tr.StepName == "charge" && tr.Event == "retry" {
				found = tr.Actor == "ops@example.com" && tr.FromState == "error" && tr.ToState == "pending"
			}
		}
		require.True(t, found, "step retry transition recorded with who and why")

		// Cancel a complete task: refused.
		_, err = c.CancelTask(ctx, task.ID, tasker.Actor{Who: "ops"})
		require.True(t, errors.Is(err, tasker.ErrInvalidTransition), "%v", err)

		// Resolve a failed step manually; its child then runs.
		failing.Store(true)
		t2, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "manual"})
		require.NoError(t, err)
		_, err = c.RunTask(ctx, t2.ID)
		require.NoError(t, err)
		st, err := c.ResolveStep(ctx, t2.ID, "charge", tasker.Actor{Who: "ops", Reason: "charged by phone"})
		require.NoError(t, err)
		require.Equal(t, tasker.StepState("resolved_manually"), st.State)
		res, err = c.RunTask(ctx, t2.ID)
		require.NoError(t, err)
		require.Equal(t, tasker.TaskState("complete"), res.Status)
		_, err = c.ResolveStep(ctx, t2.ID, "ship", tasker.Actor{Who: "ops"})
		require.True(t, errors.Is(err, tasker.ErrInvalidTransition), "resolve a complete step: %v", err)

		// Resolve the root of a task that has not started: its first claim
		// looks only at the roots (charge, resolved), yet ship runs.
		tr, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "manual"})
		require.NoError(t, err)
		_, err = c.ResolveStep(ctx, tr.ID, "charge", tasker.Actor{Who: "ops", Reason: "charged by phone"})
		require.NoError(t, err)
		res, err = c.RunTask(ctx, tr.ID)
		require.NoError(t, err)
		require.Equal(t, tasker.TaskState("complete"), res.Status)
		detail, err := c.Task(ctx, tr.ID)
		require.NoError(t, err)
		require.Len(t, detail.Steps, 2)
		for _, s := range detail.Steps {
			want := map[string]tasker.StepState{"charge": "resolved_manually", "ship": "complete"}[s.Name]
			require.Equal(t, want, s.State, "step %s", s.Name)
		}

		// Cancel a pending task, then again.
		t3, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "manual"})
		require.NoError(t, err)
		cancelEvents, stopEvents := c.Subscribe(tasker.EventStepCancelled, tasker.EventTaskCancelled)
		defer stopEvents()
		cancelled, err := c.CancelTask(ctx, t3.ID, tasker.Actor{Who: "ops", Reason: "customer changed mind"})
		require.NoError(t, err)
		require.Equal(t, tasker.TaskState("cancelled"), cancelled.State)
		var cancelKinds []string
		for len(cancelKinds) == 0 || cancelKinds[len(cancelKinds)-1] != "task.cancelled:" {
			select {
			case ev := <-cancelEvents:
				require.Equal(t, t3.ID, ev.TaskID)
				cancelKinds = append(cancelKinds, string(ev.Kind)+":"+ev.StepName)
			case <-time.After(30 * time.Second):
				t.Fatalf("cancel events so far: %v", cancelKinds)
			}
		}
		require.Len(t, cancelKinds, 1+len(stepsOf(t, c, t3.ID)), "one step.cancelled per step, then task.cancelled: %v", cancelKinds)
		_, err = c.CancelTask(ctx, t3.ID, tasker.Actor{Who: "ops"})
		require.True(t, errors.Is(err, tasker.ErrInvalidTransition), "%v", err)
		d3, err := c.Task(ctx, t3.ID)
		require.NoError(t, err)
		for _, s := range d3.Steps {
			require.Equal(t, tasker.StepState("cancelled"), s.State)
		}
		res, err = c.Handle(ctx, t3.ID)
		require.NoError(t, err)
		require.Equal(t, tasker.TaskState("cancelled"), res.Status, "a cancelled task does not run")
		_, err = c.CancelTask(ctx, 987654, tasker.Actor{})
		require.True(t, errors.Is(err, tasker.ErrNotFound))
	})
}

func TestTimeoutPanicAndIdempotency(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		c.RegisterHandler("Slow", tasker.StepHandlerFunc(func(ctx context.Context, sc *tasker.StepContext) (any, error) {
			if sc.Attempt == 1 {
				<-ctx.Done() // honours the step timeout
				return nil, ctx.Err()
			}
			return "fast enough", nil
		}))
		c.RegisterHandler("Panics", tasker.StepHandlerFunc(func(ctx context.Context, sc *tasker.StepContext) (any, error) {
			if sc.Attempt == 1 {
				panic("nil map somewhere")
			}
			return "recovered", nil
		}))
		_, err := c.AddTemplate("tp.yml", []byte(`name: tp
namespace_name: test
step_templates:
  - {name: slow, handler_class: Slow, timeout_seconds: 1}
  - {name: panics, handler_class: Panics}
`))
		require.NoError(t, err)
		ctx := context.Background()
		req := &tasker.TaskRequest{Namespace: "test", Name: "tp", IdempotencyKey: "once"}
		task, created, err := c.InitializeTask(ctx, req)
		require.NoError(t, err)
		require.True(t, created)
		again, created, err := c.InitializeTask(ctx, req)
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, task.ID, again.ID)
		require.Equal(t, 1, countTasks(t, c))

		res, err := c.RunTask(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, tasker.TaskState("complete"), res.Status)
		_, stepTrs, err := c.Transitions(ctx, task.ID)
		require.NoError(t, err)
		var kinds []string
		for _, tr := range stepTrs {
			if tr.ToState == "waiting_for_retry" {
				var meta struct {
					Error struct {
						Kind    string `json:"kind"`
						Message string `json:"message"`
					} `json:"error"`
				}
				require.NoError(t, json.Unmarshal(tr.Metadata, &meta))
				kinds = append(kinds, tr.StepName+":"+meta.Error.Kind)
				if meta.Error.Kind == "panic" {
					require.Contains(t, meta.Error.Message, "nil map somewhere")
				}
			}
		}
		require.ElementsMatch(t, []string{"slow:timeout", "panics:panic"}, kinds)
	})
}

// A step claimed by a coordinator that died is rescued when its lease
// expires: the lost attempt counts as a retryable failure and the task
// completes under a live runner.
func TestRescueExpiredLease(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		dead, err := tasker.Open(ctx, tasker.Config{DatabaseURL: url, AutoMigrate: true, TemplatesDir: t.TempDir(),
			Backoff: fastBackoff(), StepLease: 300 * time.Millisecond, ShutdownGrace: 50 * time.Millisecond, Owner: "doomed"})
		require.NoError(t, err)
		defer dead.Close()
		started := make(chan struct{})
		block := make(chan struct{})
		defer close(block)
		dead.RegisterHandler("H", tasker.StepHandlerFunc(func(ctx context.Context, sc *tasker.StepContext) (any, error) {
			close(started)
			<-block // never finishes: the process "dies" holding the lease
			return nil, nil
		}))
		tmpl := "name: rescue\nnamespace_name: test\nstep_templates:\n  - {name: only, handler_class: H}\n"
		_, err = dead.AddTemplate("r.yml", []byte(tmpl))
		require.NoError(t, err)
		task, _, err := dead.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "rescue"})
		require.NoError(t, err)
		hctx, stopDead := context.WithCancel(ctx)
		go func() { _, _ = dead.Handle(hctx, task.ID) }()
		<-started
		// Simulate the crash: the dead coordinator stops extending its lease.
		stopDead()

		live, err := tasker.Open(ctx, tasker.Config{DatabaseURL: url, TemplatesDir: t.TempDir(), Backoff: fastBackoff(),
			PollInterval: 20 * time.Millisecond, RescueInterval: 100 * time.Millisecond, Owner: "survivor"})
		require.NoError(t, err)
		defer live.Close()
		live.RegisterHandler("H", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) { return "done", nil }))
		_, err = live.AddTemplate("r.yml", []byte(tmpl))
		require.NoError(t, err)
		rctx, stop := context.WithCancel(ctx)
		runDone := make(chan error, 1)
		go func() { runDone <- live.Run(rctx, 2) }()
		require.Eventually(t, func() bool {
			d, err := live.Task(ctx, task.ID)
			return err == nil && d.State == "complete"
		}, time.Minute, 50*time.Millisecond)
		stop()
		require.NoError(t, <-runDone)
		d, err := live.Task(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, 2, d.Steps[0].Attempts, "the lost attempt counts")
		_, stepTrs, err := live.Transitions(ctx, task.ID)
		require.NoError(t, err)
		var reasons []string
		for _, tr := range stepTrs {
			reasons = append(reasons, tr.Event+"/"+tr.Actor+"/"+tr.Reason)
		}
		require.Contains(t, strings.Join(reasons, "\n"), "fail_retryable/survivor/lease of doomed expired")
	})
}

// stepsOf returns the steps of a task.
func stepsOf(t *testing.T, c *tasker.Client, taskID int64) []*tasker.Step {
	t.Helper()
	d, err := c.Task(context.Background(), taskID)
	require.NoError(t, err)
	return d.Steps
}

// An operator can declare a failed task done: it becomes resolved_manually
// with the actor and reason recorded, leaves the queue, publishes
// task.resolved_manually, and does not run again. A finished or already
// resolved task cannot be resolved.
func TestResolveTask(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		c.RegisterHandler("Declined", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) {
			return nil, tasker.Permanent(errors.New("card declined"))
		}))
		_, err := c.AddTemplate("r.yml", []byte("name: resolvable\nnamespace_name: test\nstep_templates:\n"+
			"  - {name: charge, handler_class: Declined}\n  - {name: ship, handler_class: Declined, depends_on_step: charge}\n"))
		require.NoError(t, err)
		ctx := context.Background()
		task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "resolvable"})
		require.NoError(t, err)
		res, err := c.RunTask(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, tasker.TaskState("error"), res.Status)

		events, stop := c.Subscribe(tasker.EventTaskResolved)
		defer stop()
		got, err := c.ResolveTask(ctx, task.ID, tasker.Actor{Who: "ops", Reason: "refunded by hand"})
		require.NoError(t, err)
		require.Equal(t, tasker.TaskState("resolved_manually"), got.State)
		select {
		case ev := <-events:
			require.Equal(t, task.ID, ev.TaskID)
			require.Equal(t, "ops", ev.Data["actor"])
			require.Equal(t, "refunded by hand", ev.Data["reason"])
		case <-time.After(30 * time.Second):
			t.Fatal("no task.resolved_manually event")
		}
		taskTrs, _, err := c.Transitions(ctx, task.ID)
		require.NoError(t, err)
		last := taskTrs[len(taskTrs)-1]
		require.Equal(t, "resolved_manually", last.ToState)
		require.Equal(t, "ops", last.Actor)
		require.Equal(t, "refunded by hand", last.Reason)
		d, err := c.Task(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, tasker.StepState("error"), d.Steps[0].State, "steps keep their states")
		q, err := c.Queue(ctx)
		require.NoError(t, err)
		require.Empty(t, q)
		h, err := c.Handle(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, tasker.TaskState("resolved_manually"), h.Status, "a resolved task does not run")

		_, err = c.ResolveTask(ctx, task.ID, tasker.Actor{Who: "ops"})
		require.True(t, errors.Is(err, tasker.ErrInvalidTransition), "%v", err)
		_, err = c.ResolveTask(ctx, 987654, tasker.Actor{})
		require.True(t, errors.Is(err, tasker.ErrNotFound), "%v", err)
	})
}
