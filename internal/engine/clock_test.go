package engine_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/clock"
	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/taskertype"
)

const hourRetryTemplate = `
name: hour_retry
namespace_name: clock
version: 1.0.0
step_templates:
  - name: flaky
    handler_class: Flaky
`

// TestRunTaskWaitsOnTheEngineClock: RunTask sleeps through a step's retry
// delay on the engine's clock. The handler's first attempt asks for a retry
// in an hour; once RunTask sleeps, advancing a fake clock by that hour
// lets the task complete at once (a RunTask sleeping on the system clock
// never shows a pending fake timer, and the test times out).
func TestRunTaskWaitsOnTheEngineClock(t *testing.T) {
	for name, open := range map[string]func(testing.TB) store.Store{
		"sqlite":   func(tb testing.TB) store.Store { return testdb.SQLite(tb) },
		"postgres": func(tb testing.TB) store.Store { return testdb.Postgres(tb) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			fake := clock.NewFake(time.Now().Truncate(time.Second))
			reg := template.NewRegistry()
			addTemplate(t, reg, hourRetryTemplate)
			e, err := engine.New(engine.Config{Store: open(t), Templates: reg, Clock: fake, RequireHandlers: true})
			require.NoError(t, err)
			t.Cleanup(e.Close)
			var attempts atomic.Int32
			e.RegisterHandler("Flaky", taskertype.StepHandlerFunc(func(ctx context.Context, s *taskertype.StepContext) (any, error) {
				attempts.Add(1)
				if s.Attempt == 1 {
					return nil, taskertype.Retryable(errors.New("busy"), time.Hour)
				}
				return map[string]int{"attempt": s.Attempt}, nil
			}))
			retried, unsubscribe := e.Bus().Subscribe(0, taskertype.EventStepRetryScheduled)
			defer unsubscribe()

			task, _, err := e.InitializeTask(ctx, &engine.TaskRequest{Namespace: "clock", Name: "hour_retry"})
			require.NoError(t, err)
			type outcome struct {
				res *engine.HandleResult
				err error
			}
			done := make(chan outcome, 1)
			go func() {
				res, err := e.RunTask(ctx, task.ID)
				done <- outcome{res, err}
			}()
			select {
			case <-retried: // the retry time is recorded, an hour ahead on the fake clock
			case <-ctx.Done():
				t.Fatal("the first attempt never failed")
			}
			// RunTask is asleep once a wait of about an hour is pending
			// (the lease keeper's timers are seconds long).
			require.NoError(t, fake.WaitForWaiterBeyond(ctx, 50*time.Minute))
			fake.Advance(time.Hour)
			select {
			case o := <-done:
				require.NoError(t, o.err)
				require.Equal(t, engine.ActionComplete, o.res.Outcome)
			case <-ctx.Done():
				steps, _ := e.Explain(context.Background(), task.ID)
				for _, st := range steps {
					t.Logf("%+v", *st)
				}
				due, _ := fake.NextDue()
				t.Logf("now %s waiters %d next due %s", fake.Now(), fake.Waiters(), due)
				t.Fatal("RunTask did not finish after the clock passed the retry time")
			}
			require.EqualValues(t, 2, attempts.Load())
		})
	}
}

const hourlyTemplate = `
name: hourly
namespace_name: clock
version: 1.0.0
step_templates:
  - name: a
    handler_class: tasker:noop
schedules:
  - name: every_hour
    cron: "@every 1h"
`

// TestSchedulerRunsOnTheEngineClock: the cron scheduler Run starts follows
// the engine's clock. Advancing a fake clock past the hourly tick creates
// the tick's task within the test's timeout (a scheduler timed by the
// system clock would wait an hour).
func TestSchedulerRunsOnTheEngineClock(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fake := clock.NewFake(time.Now().Truncate(time.Hour).Add(30 * time.Minute))
	reg := template.NewRegistry()
	addTemplate(t, reg, hourlyTemplate)
	e, err := engine.New(engine.Config{Store: testdb.SQLite(t), Templates: reg, Clock: fake})
	require.NoError(t, err)
	t.Cleanup(e.Close)
	created, unsubscribe := e.Bus().Subscribe(0, taskertype.EventTaskInitialized)
	defer unsubscribe()
	runCtx, stop := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- e.Run(runCtx, 1) }()
	defer func() { stop(); require.NoError(t, <-stopped) }()

	// The scheduler is asleep once a wait of half an hour (to the next full
	// hour) is pending; the runner's own timers are seconds long.
	require.NoError(t, fake.WaitForWaiterBeyond(ctx, 20*time.Minute))
	fake.Advance(time.Hour)
	select {
	case ev := <-created:
		require.NotZero(t, ev.TaskID)
	case <-ctx.Done():
		t.Fatal("no task was created after the clock passed the hourly tick")
	}
}
