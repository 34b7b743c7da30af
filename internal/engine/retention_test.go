package engine_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/clock"
	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/store/postgres"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/taskertype"
)

const (
	hourRetentionTemplate = `
name: short
namespace_name: retention
retention: 1h
step_templates:
  - {name: only, handler_class: Ok}
`
	defaultRetentionTemplate = `
name: default
namespace_name: retention
step_templates:
  - {name: only, handler_class: Ok}
`
	foreverRetentionTemplate = `
name: forever
namespace_name: retention
retention: forever
step_templates:
  - {name: only, handler_class: Ok}
`
	failingRetentionTemplate = `
name: failing
namespace_name: retention
retention: 1h
retention_failed: 2h
step_templates:
  - {name: only, handler_class: Fails}
`
)

// TestRetentionPrunesOnTheEngineClock: each task keeps the retention of its
// template or of the engine's Config (a failed task at least as long as a
// complete one unless its template says), its keep_until is its completion
// plus that, and a Run loop's pruner deletes it once the engine's clock
// passes it, and not before; a task kept for ever stays.
func TestRetentionPrunesOnTheEngineClock(t *testing.T) {
	for name, open := range map[string]func(testing.TB) store.Store{
		"sqlite":   func(tb testing.TB) store.Store { return testdb.SQLite(tb) },
		"postgres": func(tb testing.TB) store.Store { return testdb.Postgres(tb) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			fake := clock.NewFake(time.Now().Truncate(time.Second))
			reg := template.NewRegistry()
			for _, y := range []string{hourRetentionTemplate, defaultRetentionTemplate, foreverRetentionTemplate,
				failingRetentionTemplate} {
				addTemplate(t, reg, y)
			}
			e, err := engine.New(engine.Config{Store: open(t), Templates: reg, Clock: fake, Retention: 3 * time.Hour,
				PruneInterval: time.Minute})
			require.NoError(t, err)
			t.Cleanup(e.Close)
			e.RegisterHandler("Ok", taskertype.StepHandlerFunc(func(context.Context, *taskertype.StepContext) (any, error) {
				return nil, nil
			}))
			e.RegisterHandler("Fails", taskertype.StepHandlerFunc(func(context.Context, *taskertype.StepContext) (any, error) {
				return nil, taskertype.Permanent(errors.New("no"))
			}))
			run := func(name string, want taskertype.TaskState) *taskertype.Task {
				task, _, err := e.InitializeTask(ctx, &engine.TaskRequest{Namespace: "retention", Name: name})
				require.NoError(t, err)
				_, err = e.RunTask(ctx, task.ID)
				require.NoError(t, err)
				task, err = e.Store().TaskGet(ctx, task.ID)
				require.NoError(t, err)
				require.Equal(t, want, task.State)
				return task
			}
			secs := func(d time.Duration) *int64 { s := int64(d / time.Second); return &s }
			short := run("short", taskertype.TaskStateComplete)
			def := run("default", taskertype.TaskStateComplete)
			forever := run("forever", taskertype.TaskStateComplete)
			failed := run("failing", taskertype.TaskStateError)
			for _, c := range []struct {
				task             *taskertype.Task
				keep, keepFailed *int64
				until            time.Duration // after completion; 0: none
			}{
				{short, secs(time.Hour), secs(engine.RetentionFailedDefault), time.Hour},
				{def, secs(3 * time.Hour), secs(engine.RetentionFailedDefault), 3 * time.Hour},
				{forever, nil, nil, 0},
				{failed, secs(time.Hour), secs(2 * time.Hour), 2 * time.Hour},
			} {
				require.Equal(t, c.keep, c.task.RetentionSeconds, c.task.Name)
				require.Equal(t, c.keepFailed, c.task.RetentionFailedSeconds, c.task.Name)
				if c.until == 0 {
					require.Nil(t, c.task.KeepUntil, c.task.Name)
					continue
				}
				require.NotNil(t, c.task.KeepUntil, c.task.Name)
				require.True(t, c.task.CompletedAt.Add(c.until).Equal(*c.task.KeepUntil), "%s: keep until %s, completed %s",
					c.task.Name, c.task.KeepUntil, c.task.CompletedAt)
			}

			runCtx, stop := context.WithCancel(ctx)
			stopped := make(chan error, 1)
			go func() { stopped <- e.Run(runCtx, 1) }()
			defer func() { stop(); require.NoError(t, <-stopped) }()
			exists := func(id int64) bool {
				_, err := e.Store().TaskGet(ctx, id)
				if errors.Is(err, taskertype.ErrNotFound) {
					return false
				}
				require.NoError(t, err)
				return true
			}
			// step advances the clock a minute at a time (one pruning tick
			// each) until the pruner deleted gone, checking that kept stay.
			step := func(minutes int, gone []int64, kept ...int64) {
				t.Helper()
				for range minutes {
					require.NoError(t, fake.WaitForWaiterBeyond(ctx, 30*time.Second))
					fake.Advance(time.Minute)
				}
				for _, id := range gone {
					require.Eventually(t, func() bool { return !exists(id) }, 20*time.Second, 10*time.Millisecond,
						"task %d is pruned", id)
				}
				for _, id := range kept {
					require.True(t, exists(id), "task %d is kept", id)
				}
			}
			step(50, nil, short.ID, def.ID, forever.ID, failed.ID)
			step(11, []int64{short.ID}, def.ID, forever.ID, failed.ID)
			step(60, []int64{failed.ID}, def.ID, forever.ID)
			step(60, []int64{def.ID}, forever.ID)
		})
	}
}

// TestTwoEnginesPruneOnePostgres: two engines (two connection pools) on one
// PostgreSQL database prune the same due tasks at once, in small batches:
// no errors, and every task deleted exactly once between them.
func TestTwoEnginesPruneOnePostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := testdb.PostgresURL(t)
	var engines [2]*engine.Engine
	for i := range engines {
		st, err := postgres.Open(ctx, url)
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		_, err = st.MigrateUp(ctx, 0)
		require.NoError(t, err)
		engines[i], err = engine.New(engine.Config{Store: st, PruneBatch: 7})
		require.NoError(t, err)
		t.Cleanup(engines[i].Close)
	}
	st := engines[0].Store()
	const tasks = 300
	keep := time.Minute
	ps := make([]*store.TaskCreateParams, tasks)
	long := time.Now().Add(-time.Hour)
	for i := range ps {
		ps[i] = &store.TaskCreateParams{Namespace: "ns", Name: "t", Version: "1.0.0", Context: []byte(`{}`),
			MaxParallelSteps: 1, Now: long, Retention: &keep, RetentionFailed: &keep,
			Steps: []store.StepSpec{{Name: "a", HandlerClass: "h", MaxAttempts: 1},
				{Name: "b", HandlerClass: "h", MaxAttempts: 1, Parents: []string{"a"}}},
			Queue: store.QueueOp{Kind: store.QueueUpsert, Operation: "enqueue", RunAt: long}}
	}
	res, err := st.TaskCreateMany(ctx, ps)
	require.NoError(t, err)
	for _, r := range res {
		tr, err := st.TaskTransition(ctx, &store.TaskTransitionParams{TaskID: r.Task.ID,
			From: []taskertype.TaskState{taskertype.TaskStatePending}, To: taskertype.TaskStateComplete, Event: "test",
			Now: long})
		require.NoError(t, err)
		require.True(t, tr.Changed)
	}
	var wg sync.WaitGroup
	reports := make([][]*engine.PruneReport, len(engines))
	errs := make([]error, len(engines))
	for i, e := range engines {
		wg.Go(func() {
			for {
				rep, err := e.Prune(ctx, engine.PruneOptions{})
				if err != nil {
					errs[i] = err
					return
				}
				reports[i] = append(reports[i], rep)
				if !rep.Busy {
					return
				}
			}
		})
	}
	wg.Wait()
	deleted := 0
	for i := range engines {
		require.NoError(t, errs[i])
		for _, rep := range reports[i] {
			deleted += rep.Deleted
		}
	}
	require.Equal(t, tasks, deleted, "every due task deleted once: %v", reports)
	n, err := st.TaskPruneCount(ctx, &store.TaskPruneParams{Now: time.Now()})
	require.NoError(t, err)
	require.Zero(t, n)
	dry, err := engines[1].Prune(ctx, engine.PruneOptions{DryRun: true})
	require.NoError(t, err)
	require.Zero(t, dry.Due)
}
