package metrics_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/tasker-systems/tasker"
)

// tasker_tasks_pruned_total counts the tasks the process's store deleted
// by pruning.
func TestPrunedTasksAreCounted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, reg := openClient(t, "sqlite:"+filepath.Join(t.TempDir(), "m.db"))
	for range 2 {
		task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "ops", Name: "doomed"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.RunTask(ctx, task.ID); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := value(t, reg, "tasker_tasks_pruned_total", nil); got != 0 {
		t.Fatalf("tasker_tasks_pruned_total = %v before pruning", got)
	}
	rep, err := c.Prune(ctx, tasker.PruneOptions{OlderThan: time.Nanosecond, Batch: 1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Deleted != 2 || rep.Batches != 3 {
		t.Fatalf("pruned %+v, want 2 tasks in 3 batches (the last one empty)", rep)
	}
	if got, _ := value(t, reg, "tasker_tasks_pruned_total", nil); got != 2 {
		t.Fatalf("tasker_tasks_pruned_total = %v, want 2", got)
	}
}
