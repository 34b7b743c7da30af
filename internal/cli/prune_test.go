package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/store/sqlite"
	"github.com/tasker-systems/tasker/taskertype"
)

// tasker prune: --dry-run counts, a run deletes the due tasks in --batch
// sized transactions with progress and a summary, --older-than overrides
// the tasks' retention, and task show says how long a task is kept.
func TestPruneCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "prune.db")
	st, err := sqlite.Open(ctx, path)
	require.NoError(t, err)
	_, err = st.MigrateUp(ctx, 0)
	require.NoError(t, err)
	now := time.Now()
	hour := time.Hour
	finished := func(n int, at time.Time, keep *time.Duration) []int64 {
		var ids []int64
		for range n {
			res, err := st.TaskCreate(ctx, &store.TaskCreateParams{Namespace: "ns", Name: "t", Version: "1.0.0",
				Context: json.RawMessage(`{}`), MaxParallelSteps: 1, Now: at, Retention: keep, RetentionFailed: keep,
				Steps: []store.StepSpec{{Name: "a", HandlerClass: "h", MaxAttempts: 1}}})
			require.NoError(t, err)
			_, err = st.TaskTransition(ctx, &store.TaskTransitionParams{TaskID: res.Task.ID,
				From: []taskertype.TaskState{taskertype.TaskStatePending}, To: taskertype.TaskStateComplete, Event: "t", Now: at})
			require.NoError(t, err)
			ids = append(ids, res.Task.ID)
		}
		return ids
	}
	finished(5, now.Add(-2*time.Hour), &hour)              // due an hour ago
	recent := finished(2, now.Add(-10*time.Minute), &hour) // due in 50 minutes
	finished(1, now.Add(-48*time.Hour), nil)               // kept for ever
	require.NoError(t, st.Close())

	run := func(args ...string) (int, string, string) {
		var out, errw bytes.Buffer
		code := Main(ctx, append(args, "--database-url", "sqlite:"+path), Options{Stdout: &out, Stderr: &errw})
		return code, out.String(), errw.String()
	}
	code, out, _ := run("prune", "--dry-run")
	require.Equal(t, ExitOK, code, out)
	require.Contains(t, out, "5 finished tasks whose retention has passed")
	require.Contains(t, out, "dry run")
	code, out, errw := run("prune", "--batch", "2")
	require.Equal(t, ExitOK, code, out+errw)
	require.Contains(t, out, "pruned 5 finished tasks whose retention has passed")
	require.Contains(t, out, "in 3 batches")
	require.Equal(t, 3, strings.Count(errw, "so far"), errw)
	code, out, _ = run("prune", "--dry-run")
	require.Equal(t, ExitOK, code)
	require.Contains(t, out, "0 finished tasks")

	code, out, _ = run("task", "show", fmt.Sprint(recent[0]))
	require.Equal(t, ExitOK, code, out)
	require.Regexp(t, `kept: +until \d{4}-\d\d-\d\d`, out)

	code, out, _ = run("prune", "--older-than", "1d", "--json")
	require.Equal(t, ExitOK, code, out)
	var rep struct {
		Deleted int  `json:"deleted"`
		Busy    bool `json:"busy"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	require.Equal(t, 1, rep.Deleted, "the task kept for ever finished two days ago")
	code, out, _ = run("prune", "--older-than", "5m", "--dry-run")
	require.Equal(t, ExitOK, code)
	require.Contains(t, out, "2 finished tasks that finished more than 5m ago")

	for _, bad := range [][]string{{"--older-than", "forever"}, {"--older-than", "30s"}, {"--older-than", "soon"},
		{"--batch", "0"}} {
		code, _, errw := run(append([]string{"prune"}, bad...)...)
		require.Equal(t, ExitUsage, code, bad)
		require.Contains(t, errw, "tasker: ", bad)
	}
}

func TestRetentionText(t *testing.T) {
	secs := func(s int64) *int64 { return &s }
	at := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	for want, task := range map[string]*taskertype.Task{
		"7d after it finishes (30d if it fails)":       {RetentionSeconds: secs(7 * 86400), RetentionFailedSeconds: secs(30 * 86400)},
		"90m after it finishes (for ever if it fails)": {RetentionSeconds: secs(5400)},
		"for ever":                            {},
		"until " + fmtTime(at.Add(time.Hour)): {CompletedAt: &at, KeepUntil: new(at.Add(time.Hour)), RetentionSeconds: secs(3600)},
	} {
		require.Equal(t, want, retentionText(task))
	}
}
