package tasker_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/taskertype"
)

// A delayed task is created at once but no runner starts it before it is
// due; its deadline counts from then; explain says it is delayed.
func TestDelayedTask(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		started := make(chan time.Time, 4)
		c.RegisterHandler("First", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) {
			started <- time.Now()
			return nil, nil
		}))
		c.RegisterHandler("Second", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) {
			return nil, nil
		}))
		// timeout_seconds 4 with a 5 s delay: the deadline counts from when
		// the task is due, so it completes (counted from the creation, it
		// would expire before it was due). 4 s leaves a loaded machine time
		// to run two no-op steps.
		_, err := c.AddTemplate("d.yml", []byte(deadlineTemplate("delayed", 4)))
		require.NoError(t, err)
		ctx := context.Background()
		rctx, stop := context.WithCancel(ctx)
		runDone := make(chan error, 1)
		go func() { runDone <- c.Run(rctx, 2) }()
		defer func() { stop(); require.NoError(t, <-runDone) }()

		created := time.Now()
		task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "delayed", DelaySeconds: 5})
		require.NoError(t, err)
		require.NotNil(t, task.RunAt)
		require.WithinDuration(t, created.Add(5*time.Second), *task.RunAt, time.Second)

		rs, err := c.Explain(ctx, task.ID)
		require.NoError(t, err)
		if time.Now().Before(*task.RunAt) { // not yet due (always, unless the machine stalled 5 s)
			require.Contains(t, rs[0].Reason, "task is delayed until")
		}

		d := waitTaskState(t, c, task.ID, "complete")
		require.NotNil(t, d.RunAt)
		first := <-started
		require.False(t, first.Before(task.RunAt.Add(-50*time.Millisecond)), "started %s before it was due at %s", first, task.RunAt)

		// run_at in the past: due at once, not delayed.
		past := time.Now().Add(-time.Hour)
		now, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: "delayed", RunAt: &past})
		require.NoError(t, err)
		require.Nil(t, now.RunAt)
		waitTaskState(t, c, now.ID, "complete")
	})
}

// A delay that cannot be honoured is a request error naming its field, and
// nothing is written.
func TestDelayedTaskBadRequests(t *testing.T) {
	t.Parallel()
	c := openClient(t, "sqlite:"+t.TempDir()+"/bad.db")
	c.RegisterHandler("First", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) { return nil, nil }))
	c.RegisterHandler("Second", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) { return nil, nil }))
	_, err := c.AddTemplate("d.yml", []byte(deadlineTemplate("delayed", 60)))
	require.NoError(t, err)
	ctx := context.Background()
	later := time.Now().Add(time.Hour)
	for _, tc := range []struct {
		req   tasker.TaskRequest
		field string
	}{
		{tasker.TaskRequest{RunAt: &later, DelaySeconds: 5}, "run_at"},
		{tasker.TaskRequest{DelaySeconds: -1}, "delay_seconds"},
		{tasker.TaskRequest{DelaySeconds: 1e12}, "delay_seconds"},
	} {
		tc.req.Namespace, tc.req.Name = "test", "delayed"
		_, _, err := c.InitializeTask(ctx, &tc.req)
		require.ErrorIs(t, err, tasker.ErrInvalidRequest)
		var re *taskertype.RequestError
		require.True(t, errors.As(err, &re), "%v", err)
		require.Equal(t, tc.field, re.Field)
	}
	tasks, err := c.ListTasks(ctx, &tasker.TaskFilter{})
	require.NoError(t, err)
	require.Empty(t, tasks)

	// The JSON form of a request takes run_at (RFC 3339) and delay_seconds.
	var req tasker.TaskRequest
	require.NoError(t, json.NewDecoder(strings.NewReader(
		`{"namespace": "test", "name": "delayed", "run_at": "2030-01-02T03:04:05Z"}`)).Decode(&req))
	task, _, err := c.InitializeTask(ctx, &req)
	require.NoError(t, err)
	require.Equal(t, "2030-01-02T03:04:05Z", task.RunAt.Format(time.RFC3339))
	rs, err := c.Explain(ctx, task.ID)
	require.NoError(t, err)
	require.Contains(t, rs[0].Reason, "task is delayed until 2030-01-02T03:04:05Z")
	require.False(t, rs[0].Ready, "a delayed task's steps are not ready before its run_at")
}
