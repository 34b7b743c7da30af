package engine_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/clock"
	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// TestIdempotencyWindow: a template's idempotency_window_seconds makes a
// key deduplicate for that long after its task's creation; after it, the
// same key creates a new task.
func TestIdempotencyWindow(t *testing.T) {
	for name, open := range map[string]func(testing.TB) store.Store{
		"sqlite":   func(tb testing.TB) store.Store { return testdb.SQLite(tb) },
		"postgres": func(tb testing.TB) store.Store { return testdb.Postgres(tb) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			fake := clock.NewFake(time.Now().Truncate(time.Second))
			reg := template.NewRegistry()
			addTemplate(t, reg, `
name: nightly
namespace_name: window
idempotency_window_seconds: 3600
step_templates:
  - {name: only, handler_class: tasker:noop}
`)
			e, err := engine.New(engine.Config{Store: open(t), Templates: reg, Clock: fake})
			require.NoError(t, err)
			t.Cleanup(e.Close)
			req := &engine.TaskRequest{Namespace: "window", Name: "nightly", IdempotencyKey: "report-2026-12-05"}
			first, created, err := e.InitializeTask(ctx, req)
			require.NoError(t, err)
			require.True(t, created)
			fake.Advance(59 * time.Minute)
			same, created, err := e.InitializeTask(ctx, req)
			require.NoError(t, err)
			require.False(t, created)
			require.Equal(t, first.ID, same.ID)
			fake.Advance(2 * time.Minute)
			next, created, err := e.InitializeTask(ctx, req)
			require.NoError(t, err)
			require.True(t, created, "the window passed: the key starts a new task")
			require.NotEqual(t, first.ID, next.ID)
		})
	}
}
