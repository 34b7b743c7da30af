package engine_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/backoff"
	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/taskertype"
)

const externalTemplate = `
name: external
namespace_name: ruby
version: 1.0.0
max_parallel_steps: 4
step_templates:
  - name: a
    handler_class: Ruby::A
    handler_config: {k: v}
  - name: b
    depends_on_step: a
    handler_class: Ruby::B
    default_retry_limit: 3
  - name: c
    depends_on_step: a
    handler_class: Ruby::C
  - name: d
    depends_on_steps: [b, c]
    handler_class: Ruby::D
`

// externalBackends runs fn against a fresh engine on SQLite and on PostgreSQL.
func externalBackends(t *testing.T, fn func(t *testing.T, e *engine.Engine)) {
	t.Helper()
	for name, open := range map[string]func(testing.TB) store.Store{
		"sqlite":   func(tb testing.TB) store.Store { return testdb.SQLite(tb) },
		"postgres": func(tb testing.TB) store.Store { return testdb.Postgres(tb) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := open(t)
			reg := template.NewRegistry()
			tmpl, errs := template.Parse("external.yaml", []byte(externalTemplate), "")
			require.Empty(t, errs)
			require.NoError(t, reg.Add(tmpl))
			e, err := engine.New(engine.Config{Store: st, Templates: reg, EnqueueHandler: engine.EventEnqueueHandler{},
				Backoff:   backoff.Config{Base: 5 * time.Millisecond, Max: 20 * time.Millisecond, Min: time.Millisecond},
				StepLease: time.Minute})
			require.NoError(t, err)
			fn(t, e)
		})
	}
}

func newExternalTask(t *testing.T, e *engine.Engine) int64 {
	t.Helper()
	task, created, err := e.InitializeTask(context.Background(), &engine.TaskRequest{Namespace: "ruby", Name: "external",
		Context: json.RawMessage(`{"order":7}`)})
	require.NoError(t, err)
	require.True(t, created)
	return task.ID
}

func names(steps []engine.ExternalStep) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = s.Name
	}
	return out
}

func succeed(steps []engine.ExternalStep) []engine.ExternalResult {
	out := make([]engine.ExternalResult, len(steps))
	for i, s := range steps {
		out[i] = engine.ExternalResult{StepID: s.StepID, Attempt: s.Attempt, Success: true,
			Results: json.RawMessage(`{"from":"` + s.Name + `"}`)}
	}
	return out
}

func TestExternalWorkerDrivesDiamond(t *testing.T) {
	t.Parallel()
	externalBackends(t, func(t *testing.T, e *engine.Engine) {
		ctx := context.Background()
		id := newExternalTask(t, e)
		events, cancel := e.Bus().Subscribe(0)
		defer cancel()

		c, err := e.ClaimSteps(ctx, id, "w1", 0)
		require.NoError(t, err)
		require.True(t, c.Runnable)
		require.Equal(t, taskertype.TaskStateInProgress, c.Task.Status)
		require.JSONEq(t, `{"order":7}`, string(c.Task.Context))
		require.Equal(t, []string{"a"}, names(c.Steps))
		a := c.Steps[0]
		require.Equal(t, "Ruby::A", a.HandlerClass)
		require.JSONEq(t, `{"k":"v"}`, string(a.HandlerConfig))
		require.Equal(t, 1, a.Attempt)
		require.WithinDuration(t, time.Now().Add(time.Minute), a.LeaseExpiresAt, 10*time.Second)

		// Nothing else is ready while a runs; finalizing now would say so.
		c2, err := e.ClaimSteps(ctx, id, "w1", 0)
		require.NoError(t, err)
		require.Empty(t, c2.Steps)

		ext, err := e.ExtendLeases(ctx, "w1", []int64{a.StepID})
		require.NoError(t, err)
		require.Equal(t, 1, ext.Extended)
		ext, err = e.ExtendLeases(ctx, "someone-else", []int64{a.StepID})
		require.NoError(t, err)
		require.Equal(t, 0, ext.Extended)

		rep, err := e.ReportResults(ctx, id, "w1", succeed(c.Steps), false)
		require.NoError(t, err)
		require.True(t, rep.ClaimMore)
		require.True(t, rep.Unlocks, "a has children")
		require.Equal(t, engine.ReportRecorded, rep.Results[0].Status)
		require.Equal(t, taskertype.StepStateComplete, rep.Results[0].State)

		// Repeating the report is harmless: the attempt is no longer held.
		rep, err = e.ReportResults(ctx, id, "w1", succeed(c.Steps), false)
		require.NoError(t, err)
		require.Equal(t, engine.ReportDiscarded, rep.Results[0].Status)
		require.False(t, rep.Unlocks, "nothing was recorded")

		c, err = e.ClaimSteps(ctx, id, "w1", 0)
		require.NoError(t, err)
		require.ElementsMatch(t, []string{"b", "c"}, names(c.Steps))
		for _, s := range c.Steps {
			require.JSONEq(t, `{"from":"a"}`, string(s.DependencyResults["a"]))
		}
		// The last report of this batch finalizes in the same call.
		rep, err = e.ReportResults(ctx, id, "w1", succeed(c.Steps), true)
		require.NoError(t, err)
		require.NotNil(t, rep.Final)
		require.Equal(t, engine.ActionContinue, rep.Final.Outcome, "d is ready")
		require.Equal(t, taskertype.TaskStateInProgress, rep.Final.Status)

		c, err = e.ClaimSteps(ctx, id, "w1", 0)
		require.NoError(t, err)
		require.Equal(t, []string{"d"}, names(c.Steps))
		require.Len(t, c.Steps[0].DependencyResults, 2)
		rep, err = e.ReportResults(ctx, id, "w1", succeed(c.Steps), false)
		require.NoError(t, err)
		require.False(t, rep.Unlocks, "d has no children")

		res, err := e.Finalize(ctx, id, "w1")
		require.NoError(t, err)
		require.Equal(t, engine.ActionComplete, res.Outcome)
		require.Equal(t, taskertype.TaskStateComplete, res.Status)

		// Finalizing again changes nothing, alone or with a report;
		// claiming a finished task gives nothing.
		res, err = e.Finalize(ctx, id, "w1")
		require.NoError(t, err)
		require.Equal(t, engine.ActionNone, res.Outcome)
		rep, err = e.ReportResults(ctx, id, "w1", nil, true)
		require.NoError(t, err)
		require.Equal(t, engine.ActionNone, rep.Final.Outcome)
		require.Equal(t, taskertype.TaskStateComplete, rep.Final.Status)
		c, err = e.ClaimSteps(ctx, id, "w1", 0)
		require.NoError(t, err)
		require.False(t, c.Runnable)
		require.Empty(t, c.Steps)

		var kinds []taskertype.EventKind
		for len(events) > 0 {
			kinds = append(kinds, (<-events).Kind)
		}
		require.Equal(t, taskertype.EventTaskStarted, kinds[0])
		require.Equal(t, taskertype.EventTaskCompleted, kinds[len(kinds)-1])
	})
}

func TestExternalWorkerFailures(t *testing.T) {
	t.Parallel()
	externalBackends(t, func(t *testing.T, e *engine.Engine) {
		ctx := context.Background()
		id := newExternalTask(t, e)
		c, err := e.ClaimSteps(ctx, id, "w1", 0)
		require.NoError(t, err)
		_, err = e.ReportResults(ctx, id, "w1", succeed(c.Steps), false)
		require.NoError(t, err)
		c, err = e.ClaimSteps(ctx, id, "w1", 0)
		require.NoError(t, err)
		var b, cc engine.ExternalStep
		for _, s := range c.Steps {
			if s.Name == "b" {
				b = s
			} else {
				cc = s
			}
		}

		// A stale attempt and another owner's report are discarded.
		rep, err := e.ReportResults(ctx, id, "w1", []engine.ExternalResult{{StepID: b.StepID, Attempt: b.Attempt + 1, Success: true}}, false)
		require.NoError(t, err)
		require.Equal(t, engine.ReportDiscarded, rep.Results[0].Status)
		require.Contains(t, rep.Results[0].Reason, "stale")
		rep, err = e.ReportResults(ctx, id, "w2", []engine.ExternalResult{{StepID: b.StepID, Attempt: b.Attempt, Success: true}}, false)
		require.NoError(t, err)
		require.Equal(t, engine.ReportDiscarded, rep.Results[0].Status)

		// b fails with a server-requested delay; c raises an exception (with a
		// delay too, so that the finalizer sees both waiting).
		rep, err = e.ReportResults(ctx, id, "w1", []engine.ExternalResult{
			{StepID: b.StepID, Attempt: b.Attempt, Error: &engine.ExternalError{Message: "slow down", Class: "TaskerCore::RetryableError",
				RetryAfterSeconds: 2}},
			{StepID: cc.StepID, Attempt: cc.Attempt, Error: &engine.ExternalError{Message: "boom", Class: "RuntimeError",
				RetryAfterSeconds: 1, Backtrace: []string{"handler.rb:3:in `process'"}}},
		}, false)
		require.NoError(t, err)
		require.True(t, rep.ClaimMore)
		require.Equal(t, taskertype.StepStateWaitingForRetry, rep.Results[0].State)
		require.NotNil(t, rep.Results[0].NextRetryAt)
		require.WithinDuration(t, time.Now().Add(2*time.Second), *rep.Results[0].NextRetryAt, time.Second)

		res, err := e.Finalize(ctx, id, "w1")
		require.NoError(t, err)
		require.Equal(t, engine.ActionWait, res.Outcome)
		require.NotNil(t, res.NextRunAt)
		require.Equal(t, taskertype.TaskStateWaitingForRetry, res.Status)

		// The stored error keeps the exception's class and backtrace.
		steps, err := e.Store().StepList(ctx, id)
		require.NoError(t, err)
		for _, st := range steps {
			if st.Name == "c" {
				var doc map[string]any
				require.NoError(t, json.Unmarshal(st.Error, &doc))
				require.Equal(t, "RuntimeError", doc["class"])
				require.Equal(t, "boom", doc["message"])
				require.Equal(t, []any{"handler.rb:3:in `process'"}, doc["backtrace"])
			}
		}

		// After c's backoff, c fails permanently: claim_more false, task failed.
		require.Eventually(t, func() bool {
			c, err = e.ClaimSteps(ctx, id, "w1", 0)
			require.NoError(t, err)
			return len(c.Steps) > 0
		}, 5*time.Second, 10*time.Millisecond)
		require.Equal(t, []string{"c"}, names(c.Steps))
		require.Equal(t, 2, c.Steps[0].Attempt)
		rep, err = e.ReportResults(ctx, id, "w1", []engine.ExternalResult{{StepID: c.Steps[0].StepID, Attempt: 2,
			Error: &engine.ExternalError{Message: "card declined", Permanent: true}}}, false)
		require.NoError(t, err)
		require.False(t, rep.ClaimMore)
		require.Equal(t, taskertype.StepStateError, rep.Results[0].State)
		res, err = e.Finalize(ctx, id, "w1")
		require.NoError(t, err)
		require.Equal(t, engine.ActionFail, res.Outcome)
		require.Equal(t, taskertype.TaskStateError, res.Status)
	})
}

func TestExternalWorkerValidation(t *testing.T) {
	t.Parallel()
	externalBackends(t, func(t *testing.T, e *engine.Engine) {
		ctx := context.Background()
		_, err := e.ClaimSteps(ctx, 999, "w1", 0)
		require.ErrorIs(t, err, taskertype.ErrNotFound)
		_, err = e.ClaimSteps(ctx, 1, "", 0)
		require.ErrorIs(t, err, taskertype.ErrInvalidRequest)
		id := newExternalTask(t, e)
		rep, err := e.ReportResults(ctx, id, "w1", []engine.ExternalResult{{StepID: 12345, Attempt: 1, Success: true}}, false)
		require.NoError(t, err)
		require.Equal(t, engine.ReportDiscarded, rep.Results[0].Status)
		res, err := e.Finalize(ctx, id, "w1")
		require.NoError(t, err)
		require.Equal(t, engine.ActionNone, res.Outcome, "a pending task is not finalized")
	})
}
