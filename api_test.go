package tasker_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
)

func openSQLite(t *testing.T) *tasker.Client {
	t.Helper()
	return openClient(t, "sqlite:"+filepath.Join(t.TempDir(), "tasker.db"))
}

// TestRunRefusesNoWorkers: Run with workers <= 0 is a caller's mistake,
// reported at once instead of running with a silent default.
func TestRunRefusesNoWorkers(t *testing.T) {
	c := openSQLite(t)
	for _, n := range []int{0, -1} {
		err := c.Run(context.Background(), n)
		require.Error(t, err, "workers %d", n)
		require.Contains(t, err.Error(), "workers must be at least 1")
	}
}

// TestStateListsAreCopies: the lists of states cannot be changed by callers.
func TestStateListsAreCopies(t *testing.T) {
	ts := tasker.TaskStates()
	require.Equal(t, []tasker.TaskState{tasker.TaskStatePending, tasker.TaskStateInProgress,
		tasker.TaskStateWaitingForRetry, tasker.TaskStateBlocked, tasker.TaskStateComplete, tasker.TaskStateError,
		tasker.TaskStateCancelled, tasker.TaskStateResolvedManually}, ts)
	ts[0] = "bogus"
	require.Equal(t, tasker.TaskStatePending, tasker.TaskStates()[0])

	ss := tasker.StepStates()
	require.Equal(t, []tasker.StepState{tasker.StepStatePending, tasker.StepStateInProgress,
		tasker.StepStateWaitingForRetry, tasker.StepStateComplete, tasker.StepStateError, tasker.StepStateCancelled,
		tasker.StepStateResolvedManually, tasker.StepStateSkipped}, ss)
	ss[0] = "bogus"
	require.Equal(t, tasker.StepStatePending, tasker.StepStates()[0])
}

// TestTemplateIsACopy: the templates a client returns are the public type,
// and changing one changes nothing in the client.
func TestTemplateIsACopy(t *testing.T) {
	c := openSQLite(t)
	tpl, err := c.AddTemplate("", []byte(wideTemplate(2)))
	require.NoError(t, err)
	var step *tasker.StepTemplate = tpl.Step("root")
	require.NotNil(t, step)
	require.Equal(t, "Work", step.HandlerClass)
	step.HandlerClass = "Changed"
	tpl.Steps = nil

	again, err := c.Template(tpl.Namespace, tpl.Name, "")
	require.NoError(t, err)
	require.Equal(t, "Work", again.Step("root").HandlerClass)
	require.Len(t, again.Steps, len(c.Templates()[0].Steps))
	require.Equal(t, "test/wide@1.0.0", again.Key())
}

// TestPublicTypesAreNameable names, outside the module's internals, the
// types the API returns: this file would not compile if any were missing.
func TestPublicTypesAreNameable(t *testing.T) {
	c := openSQLite(t)
	var (
		ms  []tasker.Migration
		qs  []*tasker.QueueEntry
		err error
	)
	ms, err = c.MigrationStatus(context.Background())
	require.NoError(t, err)
	require.NotEmpty(t, ms)
	for _, m := range ms {
		require.True(t, m.Applied, "migration %d %s", m.Version, m.Name)
	}
	qs, err = c.Queue(context.Background())
	require.NoError(t, err)
	require.Empty(t, qs)
	var f tasker.TaskFilter = tasker.TaskFilter{States: []tasker.TaskState{tasker.TaskStateComplete}}
	tasks, err := c.ListTasks(context.Background(), &f)
	require.NoError(t, err)
	require.Empty(t, tasks)
	var outcome tasker.Action = tasker.ActionComplete
	require.Equal(t, tasker.Action("complete"), outcome)
}
