package tasker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// The bad-input matrix through the public Go API, on both databases. Each
// case names the typed error it must return and proves that nothing was
// written. Template-level cases run against AddTemplate (the registry is the
// only thing a bad template could touch); request-level cases against
// InitializeTask and the manual operations. internal/template's tests cover
// each template rule in depth, lifecycle_test.go the schema and bypass
// cases, internal/httpapi the same inputs over HTTP.

const badBaseYAML = "name: %s\nnamespace_name: bad\nversion: 1.0.0\n"

func TestBadTemplates(t *testing.T) {
	t.Parallel()
	c := openClient(t, "sqlite:"+testdb.SQLitePath(t))
	cases := []struct {
		name string
		yaml string
		want []string // substrings of the error
	}{
		{"malformed YAML", "name: [unclosed\n", []string{"bad.yml:"}},
		{"not a mapping", "- a\n- b\n", []string{"mapping"}},
		{"wrong type of name", "name: [1, 2]\nstep_templates:\n  - {name: a, handler_class: H}\n", []string{"name"}},
		{"wrong type of retry limit", fmt.Sprintf(badBaseYAML, "t") + "step_templates:\n  - {name: a, handler_class: H, default_retry_limit: lots}\n",
			[]string{"default_retry_limit"}},
		{"wrong type of depends_on_steps", fmt.Sprintf(badBaseYAML, "t") + "step_templates:\n  - {name: a, handler_class: H}\n  - {name: b, handler_class: H, depends_on_steps: 5}\n",
			[]string{"depends_on_steps"}},
		// Unknown fields are rejected (not warned about): a misspelt
		// depends_on_step would otherwise silently drop a dependency.
		{"unknown top-level field", fmt.Sprintf(badBaseYAML, "t") + "colour: red\nstep_templates:\n  - {name: a, handler_class: H}\n",
			[]string{`unknown field "colour"`}},
		{"unknown step field (typo)", fmt.Sprintf(badBaseYAML, "t") + "step_templates:\n  - {name: a, handler_class: H}\n  - {name: b, handler_class: H, depends_on_stp: a}\n",
			[]string{`unknown field "depends_on_stp"`}},
		{"cycle", fmt.Sprintf(badBaseYAML, "t") + "step_templates:\n  - {name: a, handler_class: H, depends_on_step: c}\n  - {name: b, handler_class: H, depends_on_step: a}\n  - {name: c, handler_class: H, depends_on_step: b}\n",
			[]string{"cycle"}},
		{"self-dependency", fmt.Sprintf(badBaseYAML, "t") + "step_templates:\n  - {name: a, handler_class: H, depends_on_step: a}\n",
			[]string{"a"}},
		{"unknown dependency", fmt.Sprintf(badBaseYAML, "t") + "step_templates:\n  - {name: a, handler_class: H, depends_on_step: ghost}\n",
			[]string{"ghost"}},
		{"duplicate step names", fmt.Sprintf(badBaseYAML, "t") + "step_templates:\n  - {name: a, handler_class: H}\n  - {name: a, handler_class: H}\n",
			[]string{"duplicate"}},
		{"missing handler_class", fmt.Sprintf(badBaseYAML, "t") + "step_templates:\n  - {name: a}\n",
			[]string{"handler_class"}},
		{"no steps", fmt.Sprintf(badBaseYAML, "t") + "step_templates: []\n", []string{"step"}},
		{"invalid JSON Schema", fmt.Sprintf(badBaseYAML, "t") + "schema: {type: 12}\nstep_templates:\n  - {name: a, handler_class: H}\n",
			[]string{"schema"}},
		{"non-UTF-8 bytes", fmt.Sprintf(badBaseYAML, "t") + "description: \"caf\xe9\"\nstep_templates:\n  - {name: a, handler_class: H}\n",
			[]string{"bad.yml"}},
		{"NUL in a step name", fmt.Sprintf(badBaseYAML, "t") + "step_templates:\n  - {name: \"a\\0b\", handler_class: H}\n",
			[]string{"name"}},
		{"quotes and SQL in a name", fmt.Sprintf(badBaseYAML, `"x'; DROP TABLE tasker_tasks; --"`) + "step_templates:\n  - {name: a, handler_class: H}\n",
			[]string{"name"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.AddTemplate("bad.yml", []byte(tc.yaml))
			require.Error(t, err)
			require.True(t, errors.Is(err, tasker.ErrInvalidTemplate), "%v", err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
	require.Empty(t, c.Templates(), "no bad template was registered")
}

func TestBadRequests(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		ok := tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) { return "ok", nil })
		c.RegisterHandler("H", ok)
		_, err := c.AddTemplate("free.yml", []byte("name: free\nnamespace_name: bad\nstep_templates:\n  - {name: a, handler_class: H}\n  - {name: b, handler_class: H, depends_on_step: a}\n"))
		require.NoError(t, err)
		ctx := context.Background()
		req := func(mod func(r *tasker.TaskRequest)) tasker.TaskRequest {
			r := tasker.TaskRequest{Namespace: "bad", Name: "free"}
			mod(&r)
			return r
		}
		cases := []struct {
			name string
			req  tasker.TaskRequest
			is   error
			want string
		}{
			// PostgreSQL cannot store NUL in text or jsonb; SQLite could, but
			// both refuse it so that data stays portable.
			{"NUL escape in a context value", req(func(r *tasker.TaskRequest) { r.Context = json.RawMessage(`{"note": "a\u0000b"}`) }),
				tasker.ErrInvalidContext, "NUL"},
			{"NUL escape in a context key", req(func(r *tasker.TaskRequest) { r.Context = json.RawMessage(`{"\u0000": 1}`) }),
				tasker.ErrInvalidContext, "NUL"},
			{"raw control character in context", req(func(r *tasker.TaskRequest) { r.Context = json.RawMessage("{\"note\": \"a\x01b\"}") }),
				tasker.ErrInvalidContext, "invalid JSON"},
			{"non-UTF-8 context", req(func(r *tasker.TaskRequest) { r.Context = json.RawMessage("{\"note\": \"caf\xe9\"}") }),
				tasker.ErrInvalidContext, "UTF-8"},
			{"context is an array", req(func(r *tasker.TaskRequest) { r.Context = json.RawMessage(`[1]`) }),
				tasker.ErrInvalidContext, "object"},
			{"context is null", req(func(r *tasker.TaskRequest) { r.Context = json.RawMessage(`null`) }),
				tasker.ErrInvalidContext, "object"},
			{"NUL in initiator", req(func(r *tasker.TaskRequest) { r.Initiator = "ops\x00" }), tasker.ErrInvalidRequest, "initiator"},
			{"NUL in reason", req(func(r *tasker.TaskRequest) { r.Reason = "\x00" }), tasker.ErrInvalidRequest, "reason"},
			{"NUL in source_system", req(func(r *tasker.TaskRequest) { r.SourceSystem = "a\x00" }), tasker.ErrInvalidRequest, "source_system"},
			{"NUL in a tag", req(func(r *tasker.TaskRequest) { r.Tags = []string{"ok", "b\x00d"} }), tasker.ErrInvalidRequest, "tags"},
			{"NUL in idempotency key", req(func(r *tasker.TaskRequest) { r.IdempotencyKey = "k\x00" }), tasker.ErrInvalidRequest, "idempotency_key"},
			{"non-UTF-8 initiator", req(func(r *tasker.TaskRequest) { r.Initiator = "caf\xe9" }), tasker.ErrInvalidRequest, "UTF-8"},
			{"non-UTF-8 tag", req(func(r *tasker.TaskRequest) { r.Tags = []string{"\xff"} }), tasker.ErrInvalidRequest, "UTF-8"},
			{"NUL in step inputs", req(func(r *tasker.TaskRequest) {
				r.StepInputs = map[string]json.RawMessage{"a": json.RawMessage(`{"x": "\u0000"}`)}
			}), tasker.ErrInvalidRequest, "NUL"},
			{"step inputs not JSON", req(func(r *tasker.TaskRequest) { r.StepInputs = map[string]json.RawMessage{"a": json.RawMessage(`{`)} }),
				tasker.ErrInvalidRequest, "step_inputs"},
			{"unknown step in step inputs", req(func(r *tasker.TaskRequest) { r.StepInputs = map[string]json.RawMessage{"zz": json.RawMessage(`{}`)} }),
				tasker.ErrInvalidRequest, "zz"},
			{"quotes and SQL in namespace", req(func(r *tasker.TaskRequest) { r.Namespace = `o'brien"; DELETE FROM tasker_tasks; --` }),
				tasker.ErrNotFound, "o'brien"},
			{"NUL in name", req(func(r *tasker.TaskRequest) { r.Name = "free\x00" }), tasker.ErrNotFound, "free"},
		}
		for _, tc := range cases {
			_, _, err := c.InitializeTask(ctx, &tc.req)
			require.Error(t, err, tc.name)
			require.True(t, errors.Is(err, tc.is), "%s: %v", tc.name, err)
			require.Contains(t, err.Error(), tc.want, tc.name)
			require.NotContains(t, err.Error(), "SQLSTATE", "%s: a database error leaked: %v", tc.name, err)
		}
		require.Zero(t, countTasks(t, c), "nothing was written")
		q, err := c.Queue(ctx)
		require.NoError(t, err)
		require.Empty(t, q)

		// Hostile but valid text is stored verbatim (parameterized SQL) and
		// escaped control characters other than NUL round-trip.
		hostile := `'); DROP TABLE tasker_tasks; --"` + "\t\u00e9\u2603"
		task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "bad", Name: "free", Initiator: hostile,
			Reason: hostile, Tags: []string{hostile, "a,b", `{"x"}`}, IdempotencyKey: hostile,
			Context: mustJSON(t, map[string]string{"q": hostile, "ctl": "\x01\x1f"})})
		require.NoError(t, err)
		d, err := c.Task(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, hostile, d.Initiator)
		require.Equal(t, []string{hostile, "a,b", `{"x"}`}, d.Tags)
		var got map[string]string
		require.NoError(t, json.Unmarshal(d.Context, &got))
		require.Equal(t, hostile, got["q"])
		require.Equal(t, "\x01\x1f", got["ctl"])
		again, created, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "bad", Name: "free", IdempotencyKey: hostile})
		require.NoError(t, err)
		require.False(t, created)
		require.Equal(t, task.ID, again.ID)
		require.Equal(t, 1, countTasks(t, c))

		// Unknown task ids, through every operation.
		const ghost = 987654321
		_, err = c.Task(ctx, ghost)
		require.True(t, errors.Is(err, tasker.ErrNotFound), "%v", err)
		_, err = c.Handle(ctx, ghost)
		require.True(t, errors.Is(err, tasker.ErrNotFound), "%v", err)
		_, err = c.Explain(ctx, ghost)
		require.True(t, errors.Is(err, tasker.ErrNotFound), "%v", err)
		_, err = c.CancelTask(ctx, ghost, tasker.Actor{})
		require.True(t, errors.Is(err, tasker.ErrNotFound), "%v", err)
		_, err = c.RetrySteps(ctx, ghost, nil, tasker.Actor{})
		require.True(t, errors.Is(err, tasker.ErrNotFound), "%v", err)
		_, err = c.ResolveStep(ctx, ghost, "a", tasker.Actor{})
		require.True(t, errors.Is(err, tasker.ErrNotFound), "%v", err)
		for _, id := range []int64{0, -1} {
			_, err = c.Task(ctx, id)
			require.True(t, errors.Is(err, tasker.ErrNotFound), "task %d: %v", id, err)
		}

		// Manual operations with bad text are refused before the database.
		_, err = c.CancelTask(ctx, task.ID, tasker.Actor{Who: "ops\x00"})
		require.True(t, errors.Is(err, tasker.ErrInvalidRequest), "%v", err)
		_, err = c.ResolveStep(ctx, task.ID, "a", tasker.Actor{Reason: "\xff"})
		require.True(t, errors.Is(err, tasker.ErrInvalidRequest), "%v", err)
		_, err = c.ResolveStep(ctx, task.ID, "no'such\"step", tasker.Actor{})
		require.True(t, errors.Is(err, tasker.ErrNotFound), "%v", err)
		d, err = c.Task(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, tasker.TaskState("pending"), d.State, "refused operations changed nothing")
	})
}

// Conflicting operations racing on one task: exactly one of two cancels
// wins, retry and cancel serialize into a consistent history, and racing
// initializations with one idempotency key create one task.
func TestConcurrentConflictingOperations(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		c.RegisterHandler("Fail", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) {
			return nil, tasker.Permanent(errors.New("no"))
		}))
		c.RegisterHandler("H", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) { return "ok", nil }))
		_, err := c.AddTemplate("race.yml", []byte("name: race\nnamespace_name: bad\nstep_templates:\n  - {name: a, handler_class: Fail}\n  - {name: b, handler_class: H, depends_on_step: a}\n"))
		require.NoError(t, err)
		ctx := context.Background()
		const n = 8

		race := func(ops ...func() error) []error {
			errs := make([]error, len(ops))
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i, op := range ops {
				wg.Add(1)
				go func() { defer wg.Done(); <-start; errs[i] = op() }()
			}
			close(start)
			wg.Wait()
			return errs
		}
		succeeded := func(errs []error) int {
			ok := 0
			for _, err := range errs {
				if err == nil {
					ok++
				} else {
					require.True(t, errors.Is(err, tasker.ErrInvalidTransition), "only invalid transitions may fail: %v", err)
				}
			}
			return ok
		}

		// Cancel vs cancel.
		t1, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "bad", Name: "race"})
		require.NoError(t, err)
		var ops []func() error
		for range n {
			ops = append(ops, func() error { _, err := c.CancelTask(ctx, t1.ID, tasker.Actor{Who: "ops"}); return err })
		}
		require.Equal(t, 1, succeeded(race(ops...)), "exactly one cancel wins")

		// Retry vs retry vs cancel on a failed task.
		t2, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "bad", Name: "race"})
		require.NoError(t, err)
		res, err := c.RunTask(ctx, t2.ID)
		require.NoError(t, err)
		require.Equal(t, tasker.TaskState("error"), res.Status)
		ops = nil
		for i := range n {
			if i%2 == 0 {
				ops = append(ops, func() error { _, err := c.RetrySteps(ctx, t2.ID, nil, tasker.Actor{Who: "r"}); return err })
			} else {
				ops = append(ops, func() error { _, err := c.CancelTask(ctx, t2.ID, tasker.Actor{Who: "c"}); return err })
			}
		}
		errs := race(ops...)
		succeeded(errs)
		retries, cancels := 0, 0
		for i, err := range errs {
			if err == nil && i%2 == 0 {
				retries++
			} else if err == nil {
				cancels++
			}
		}
		require.LessOrEqual(t, retries, 1, "a failed step is retried once")
		require.Equal(t, 1, cancels, "exactly one cancel wins (from error, or from pending after a retry)")
		d, err := c.Task(ctx, t2.ID)
		require.NoError(t, err)
		require.Equal(t, tasker.TaskState("cancelled"), d.State)
		taskTrs, stepTrs, err := c.Transitions(ctx, t2.ID)
		require.NoError(t, err)
		chain := func(trs []*tasker.Transition) {
			last := map[int64]string{}
			for _, tr := range trs {
				if prev, ok := last[tr.StepID]; ok {
					require.Equal(t, prev, tr.FromState, "transition history is a chain: %+v", tr)
				}
				last[tr.StepID] = tr.ToState
			}
		}
		chain(taskTrs)
		chain(stepTrs)
		for _, st := range d.Steps {
			require.Contains(t, []tasker.StepState{"cancelled", "error"}, st.State, "step %s", st.Name)
		}

		// Initialize vs initialize with one idempotency key.
		ids := make([]int64, n)
		ops = nil
		for i := range n {
			ops = append(ops, func() error {
				task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "bad", Name: "race", IdempotencyKey: "same"})
				if err == nil {
					ids[i] = task.ID
				}
				return err
			})
		}
		for _, err := range race(ops...) {
			require.NoError(t, err)
		}
		for _, id := range ids {
			require.Equal(t, ids[0], id, "one task for one idempotency key")
		}
		require.Equal(t, 3, countTasks(t, c))
	})
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}
