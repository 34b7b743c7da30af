package tasker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
)

const batchTemplate = `
name: batch
namespace_name: bulk
version: 1.0.0
schema: {type: object, required: [n], properties: {n: {type: integer}}}
step_templates:
  - name: only
    handler_class: tasker:noop
`

func batchClient(t *testing.T, url string) *tasker.Client {
	t.Helper()
	c := openClient(t, url)
	_, err := c.AddTemplate("batch.yaml", []byte(batchTemplate))
	require.NoError(t, err)
	return c
}

func batchReq(n int, key string) *tasker.TaskRequest {
	return &tasker.TaskRequest{Namespace: "bulk", Name: "batch", Context: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n)),
		IdempotencyKey: key}
}

// TestInitializeTasks: one batch with valid requests, bad ones of every
// kind, an existing idempotency key and a key repeated in the batch; each
// request gets its own outcome in input order, the bad ones fail alone
// with their index, and every created task is announced and runnable.
func TestInitializeTasks(t *testing.T) {
	testdb.EachBackend(t, func(t *testing.T, url string) {
		ctx := context.Background()
		c := batchClient(t, url)
		existing, created, err := c.InitializeTask(ctx, batchReq(0, "k-existing"))
		require.NoError(t, err)
		require.True(t, created)
		events, cancel := c.Subscribe(tasker.EventTaskInitialized)
		defer cancel()

		reqs := []*tasker.TaskRequest{
			batchReq(0, ""),
			{Namespace: "bulk", Name: "nope"}, // unknown template
			{Namespace: "bulk", Name: "batch", Context: json.RawMessage(`{"n":"x"}`)}, // schema violation
			batchReq(3, "k-existing"),
			batchReq(4, "k-dup"),
			nil,
			batchReq(6, "k-dup"),
			{Namespace: "bulk", Name: "batch", Context: json.RawMessage(`{"n":7}`), BypassSteps: []string{"ghost"}},
			batchReq(8, ""),
		}
		res, err := c.InitializeTasks(ctx, reqs)
		require.NoError(t, err)
		require.Len(t, res, len(reqs))

		for _, i := range []int{1, 2, 5, 7} {
			var be *tasker.BatchItemError
			require.ErrorAs(t, res[i].Err, &be, "request %d", i)
			require.Equal(t, i, be.Index)
			require.Nil(t, res[i].Task)
		}
		require.ErrorIs(t, res[1].Err, tasker.ErrNotFound)
		require.ErrorIs(t, res[2].Err, tasker.ErrInvalidContext)
		require.ErrorIs(t, res[5].Err, tasker.ErrInvalidRequest)
		require.ErrorIs(t, res[7].Err, tasker.ErrInvalidRequest)
		require.Contains(t, res[7].Err.Error(), "request 7")
		require.Contains(t, res[7].Err.Error(), "ghost")

		for _, i := range []int{0, 4, 8} {
			require.NoError(t, res[i].Err, "request %d", i)
			require.True(t, res[i].Created, "request %d", i)
		}
		require.False(t, res[3].Created)
		require.Equal(t, existing.ID, res[3].Task.ID)
		require.False(t, res[6].Created)
		require.Equal(t, res[4].Task.ID, res[6].Task.ID, "a key repeated in the batch is its first request's task")
		require.NotEqual(t, res[0].Task.ID, res[8].Task.ID)

		var d tasker.TaskDetail
		for _, i := range []int{0, 4, 8} {
			got, err := c.Task(ctx, res[i].Task.ID)
			require.NoError(t, err)
			require.Len(t, got.Steps, 1)
			require.JSONEq(t, fmt.Sprintf(`{"n":%d}`, i), string(got.Context))
			d = *got
		}
		require.Equal(t, "bulk", d.Namespace)

		seen := map[int64]bool{}
		for len(seen) < 3 {
			select {
			case ev := <-events:
				seen[ev.TaskID] = true
			case <-time.After(10 * time.Second):
				t.Fatalf("task.initialized events: got %v", seen)
			}
		}
		for _, i := range []int{0, 4, 8} {
			require.True(t, seen[res[i].Task.ID], "request %d announced", i)
		}

		runCtx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.Run(runCtx, 4) }()
		require.Eventually(t, func() bool {
			for _, i := range []int{0, 4, 8} {
				got, err := c.Task(ctx, res[i].Task.ID)
				if err != nil || got.State != tasker.TaskState("complete") {
					return false
				}
			}
			return true
		}, 30*time.Second, 20*time.Millisecond)
		stop()
		require.NoError(t, <-done)
	})
}

// TestInitializeTasksEmpty: an empty batch is no error and writes nothing.
func TestInitializeTasksEmpty(t *testing.T) {
	c := batchClient(t, "sqlite:"+filepath.Join(t.TempDir(), "t.db"))
	res, err := c.InitializeTasks(context.Background(), nil)
	require.NoError(t, err)
	require.Empty(t, res)
}

// TestInitializeTasksStoreDown: when the database is gone nothing can be
// written, and the one error says so (no per-request results).
func TestInitializeTasksStoreDown(t *testing.T) {
	dir := t.TempDir()
	c, err := tasker.Open(context.Background(), tasker.Config{DatabaseURL: "sqlite:" + filepath.Join(dir, "t.db"),
		TemplatesDir: dir})
	require.NoError(t, err)
	_, err = c.AddTemplate("batch.yaml", []byte(batchTemplate))
	require.NoError(t, err)
	require.NoError(t, c.Close())
	res, err := c.InitializeTasks(context.Background(), []*tasker.TaskRequest{batchReq(1, ""), {Name: "nope"}})
	require.Error(t, err)
	require.Nil(t, res)
	require.False(t, errors.Is(err, tasker.ErrNotFound))
	_ = os.Remove(filepath.Join(dir, "t.db"))
}
