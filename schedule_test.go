package tasker_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
)

const cronYAML = `name: heartbeat
namespace_name: ops
step_templates:
  - name: beat
    handler_class: tasker:noop
schedules:
  - name: every_second
    cron: "@every 1s"
    context: {source: cron}
  - name: off
    cron: "@every 1s"
    enabled: false
`

// Run creates the tasks of a template's schedule (added while it runs),
// runs them, and Schedules reports the last tick and the next runs.
func TestSchedulesRunFromClientRun(t *testing.T) {
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx, 2) }()
		defer func() { cancel(); require.NoError(t, <-done) }()
		_, err := c.AddTemplate("heartbeat.yml", []byte(cronYAML))
		require.NoError(t, err)

		var tasks []*tasker.Task
		require.Eventually(t, func() bool {
			tasks, err = c.ListTasks(ctx, &tasker.TaskFilter{Namespace: "ops", Name: "heartbeat",
				States: []tasker.TaskState{"complete"}, Limit: 100})
			return err == nil && len(tasks) >= 2
		}, 30*time.Second, 20*time.Millisecond, "two scheduled tasks complete")
		for _, task := range tasks {
			require.Contains(t, task.Tags, "schedule:every_second")
			require.JSONEq(t, `{"source":"cron"}`, string(task.Context))
		}

		list, err := c.Schedules(ctx)
		require.NoError(t, err)
		require.Len(t, list, 2)
		s := list[0]
		require.Equal(t, "every_second", s.Name)
		require.True(t, s.Running)
		require.True(t, s.Enabled)
		require.NotNil(t, s.LastTick)
		require.NotZero(t, s.LastTaskID)
		require.Len(t, s.NextRuns, tasker.ScheduleNextRuns)
		require.True(t, s.NextRuns[0].After(*s.LastTick))
		require.Equal(t, time.Second, s.NextRuns[1].Sub(s.NextRuns[0]))
		off := list[1]
		require.Equal(t, "off", off.Name)
		require.False(t, off.Enabled)
		require.Empty(t, off.NextRuns)
		require.Nil(t, off.LastTick)
	})
}
