package tasker_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// deadlineTemplate is a two-step chain whose task may take timeout seconds.
func deadlineTemplate(name string, timeout int) string {
	return "name: " + name + "\nnamespace_name: test\ntimeout_seconds: " + strconv.Itoa(timeout) + `
step_templates:
  - {name: first, handler_class: First}
  - {name: second, handler_class: Second, depends_on_step: first}
`
}

// openWorkerClient opens a client whose handlers live in external workers
// (EventEnqueue, as with the Ruby gem): no Go handler need be registered.
func openWorkerClient(t *testing.T, url string) *tasker.Client {
	t.Helper()
	c, err := tasker.Open(context.Background(), tasker.Config{DatabaseURL: url, AutoMigrate: true,
		TemplatesDir: t.TempDir(), Backoff: fastBackoff(), EventEnqueue: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitTaskState waits until the task is in state (or the test times out).
func waitTaskState(t *testing.T, c *tasker.Client, taskID int64, state tasker.TaskState) *tasker.TaskDetail {
	t.Helper()
	var d *tasker.TaskDetail
	require.Eventually(t, func() bool {
		var err error
		d, err = c.Task(context.Background(), taskID)
		return err == nil && d.State == state
	}, 2*time.Minute, 20*time.Millisecond, "task %d never reached %s", taskID, state)
	return d
}

// requireExpired checks a task ended by its deadline: in error, its
// unfinished steps cancelled, the task's last transition the expire event
// with its reason.
func requireExpired(t *testing.T, c *tasker.Client, taskID int64, cancelled ...string) {
	t.Helper()
	d := waitTaskState(t, c, taskID, "error")
	for _, st := range d.Steps {
		if len(cancelled) > 0 && strings.Contains(strings.Join(cancelled, ","), st.Name) {
			require.Equal(t, tasker.StepState("cancelled"), st.State, "step %s", st.Name)
		}
	}
	taskTrs, _, err := c.Transitions(context.Background(), taskID)
	require.NoError(t, err)
	last := taskTrs[len(taskTrs)-1]
	require.Equal(t, "expire", last.Event)
	require.Contains(t, last.Reason, "deadline exceeded: timeout_seconds")
}

// A task whose handler is still running at the task's deadline ends in
// error: the handler's context is cancelled, the running step and the steps
// after it are cancelled, and task.failed says it expired.
func TestDeadlineCancelsRunningTask(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		cancelled := make(chan error, 1)
		c.RegisterHandler("First", tasker.StepHandlerFunc(func(ctx context.Context, sc *tasker.StepContext) (any, error) {
			<-ctx.Done() // runs until the deadline cancels it
			cancelled <- ctx.Err()
			return nil, ctx.Err()
		}))
		c.RegisterHandler("Second", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) {
			return nil, errors.New("must not run")
		}))
		// 3 s: First must have started before the deadline, which a loaded
		// machine (the whole suite under -race) did not always do within 1 s.
		_, err := c.AddTemplate("d.yml", []byte(deadlineTemplate("running", 3)))
		require.NoError(t, err)
		events, unsubscribe := c.Subscribe(tasker.EventTaskFailed)
		defer unsubscribe()
		ctx := context.Background()
		task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "running"})
		require.NoError(t, err)
		res, err := c.RunTask(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, tasker.TaskState("error"), res.Status)
		require.EqualValues(t, "expired", res.Outcome)
		select {
		case err := <-cancelled:
			require.ErrorIs(t, err, context.Canceled)
		case <-time.After(time.Minute):
			t.Fatal("First was never cancelled: it did not start before the task's deadline")
		}
		requireExpired(t, c, task.ID, "first", "second")
		select {
		case ev := <-events:
			require.Equal(t, task.ID, ev.TaskID)
			require.Equal(t, true, ev.Data["expired"])
		case <-time.After(time.Minute):
			t.Fatal("no task.failed event")
		}
	})
}

// A task waiting out a retry backoff that ends after its deadline is picked
// up at the deadline and expires then, not when the backoff ends.
func TestDeadlineInterruptsRetryBackoff(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		c.RegisterHandler("First", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) {
			return nil, tasker.Retryable(errors.New("come back in an hour"), time.Hour)
		}))
		c.RegisterHandler("Second", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) {
			return "ok", nil
		}))
		_, err := c.AddTemplate("d.yml", []byte(deadlineTemplate("backoff", 2)))
		require.NoError(t, err)
		ctx := context.Background()
		task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "backoff"})
		require.NoError(t, err)
		rctx, stop := context.WithCancel(ctx)
		runDone := make(chan error, 1)
		go func() { runDone <- c.Run(rctx, 2) }()
		defer func() { stop(); require.NoError(t, <-runDone) }()
		requireExpired(t, c, task.ID, "first", "second")
		d, err := c.Task(ctx, task.ID)
		require.NoError(t, err)
		require.Less(t, d.UpdatedAt.Sub(d.CreatedAt), 10*time.Minute, "expired at the deadline, not after the backoff")
	})
}

// A task whose step an external worker holds past the deadline is expired
// by the rescue pass of any engine: the worker's lease can no longer be
// extended and its late result is discarded.
func TestDeadlineExpiresExternallyHeldTask(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openWorkerClient(t, url)
		_, err := c.AddTemplate("d.yml", []byte(deadlineTemplate("external", 3)))
		require.NoError(t, err)
		ctx := context.Background()
		task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "external"})
		require.NoError(t, err)
		w := c.Worker()
		claim, err := w.ClaimSteps(ctx, tasker.ClaimParams{TaskID: task.ID, Owner: "ruby-worker", Limit: 1})
		require.NoError(t, err)
		require.Len(t, claim.Steps, 1)
		step := claim.Steps[0]

		// Before the deadline the rescue pass leaves the task alone (checked
		// only when the machine was quick enough to sweep before it).
		_, err = w.RescueExpired(ctx)
		require.NoError(t, err)
		d, err := c.Task(ctx, task.ID)
		require.NoError(t, err)
		if time.Now().Before(task.CreatedAt.Add(3 * time.Second)) {
			require.Equal(t, tasker.TaskState("in_progress"), d.State)
		}

		require.Eventually(t, func() bool {
			_, err := w.RescueExpired(ctx)
			require.NoError(t, err)
			d, err := c.Task(ctx, task.ID)
			return err == nil && d.State == "error"
		}, time.Minute, 50*time.Millisecond)
		requireExpired(t, c, task.ID, "first", "second")

		ext, err := w.ExtendLeases(ctx, "ruby-worker", []int64{step.StepID})
		require.NoError(t, err)
		require.Zero(t, ext.Extended, "a cancelled attempt's lease is not extended")
		rep, err := w.ReportResults(ctx, tasker.ReportParams{TaskID: task.ID, Owner: "ruby-worker",
			Results: []tasker.ExternalResult{{StepID: step.StepID, Attempt: step.Attempt, Success: true}}})
		require.NoError(t, err)
		require.Len(t, rep.Results, 1)
		require.NotEqual(t, "recorded", rep.Results[0].Status, "a late result is discarded")
		d, err = c.Task(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, tasker.TaskState("error"), d.State)
	})
}

// A task that finishes before its deadline completes as usual, and the
// template field is refused when it is not a positive integer.
func TestDeadlineNotReached(t *testing.T) {
	t.Parallel()
	c := openClient(t, "sqlite:"+t.TempDir()+"/quick.db")
	c.RegisterHandler("First", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) { return 1, nil }))
	c.RegisterHandler("Second", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) { return 2, nil }))
	_, err := c.AddTemplate("d.yml", []byte(deadlineTemplate("quick", 3600)))
	require.NoError(t, err)
	ctx := context.Background()
	task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "quick"})
	require.NoError(t, err)
	res, err := c.RunTask(ctx, task.ID)
	require.NoError(t, err)
	require.Equal(t, tasker.TaskState("complete"), res.Status)

	_, err = c.AddTemplate("bad.yml", []byte(strings.Replace(deadlineTemplate("bad", 1), "timeout_seconds: 1", "timeout_seconds: -5", 1)))
	require.ErrorContains(t, err, "timeout_seconds")
	require.ErrorContains(t, err, "must be at least 1")
}

// A result an external worker reports after the task's deadline, before
// any rescue pass expired the task, is discarded: the report expires the
// task itself, and the late result is never recorded.
func TestDeadlineReportAfterDeadlineBeforeRescue(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openWorkerClient(t, url)
		_, err := c.AddTemplate("d.yml", []byte(deadlineTemplate("late_report", 2)))
		require.NoError(t, err)
		ctx := context.Background()
		task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "late_report"})
		require.NoError(t, err)
		w := c.Worker()
		claim, err := w.ClaimSteps(ctx, tasker.ClaimParams{TaskID: task.ID, Owner: "ruby-worker", Limit: 1})
		require.NoError(t, err)
		if len(claim.Steps) == 0 { // the machine was too slow to claim within two seconds
			requireExpired(t, c, task.ID, "first", "second")
			return
		}
		step := claim.Steps[0]
		// No runner and no rescue pass: only the report can see the deadline.
		require.Eventually(t, func() bool { return time.Now().After(task.CreatedAt.Add(2100 * time.Millisecond)) },
			time.Minute, 10*time.Millisecond)
		rep, err := w.ReportAndFinalize(ctx, tasker.ReportParams{TaskID: task.ID, Owner: "ruby-worker",
			Results: []tasker.ExternalResult{{StepID: step.StepID, Attempt: step.Attempt, Success: true}}})
		require.NoError(t, err)
		require.Len(t, rep.Results, 1)
		require.Equal(t, "discarded", string(rep.Results[0].Status))
		require.Contains(t, rep.Results[0].Reason, "deadline passed")
		require.False(t, rep.ClaimMore)
		require.NotNil(t, rep.Final)
		require.Equal(t, tasker.TaskState("error"), rep.Final.Status)
		requireExpired(t, c, task.ID, "first", "second")
		d, err := c.Task(ctx, task.ID)
		require.NoError(t, err)
		for _, st := range d.Steps {
			require.Nil(t, st.Results, "step %s: no result was recorded", st.Name)
		}
	})
}
