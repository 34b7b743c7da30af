package engine

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/tasker-systems/tasker/internal/schedule"
	"github.com/tasker-systems/tasker/internal/store"
)

// historyScanLimit bounds how many of a template's most recent tasks
// ScheduleHistory reads looking for a schedule's last tick.
const historyScanLimit = 1000

// schedulers tracks the cron scheduler of an engine: one at a time, run by
// the first of its Run loops.
type schedulers struct {
	mu      sync.Mutex
	running *schedule.Scheduler
}

// scheduleClock is the engine's clock as the scheduler's: the scheduler's
// times and timers follow Config.Clock like the rest of the engine.
type scheduleClock struct{ e *Engine }

// Now is the engine's time, in UTC.
func (c scheduleClock) Now() time.Time { return c.e.now() }

// After fires once, d from now on the engine's clock.
func (c scheduleClock) After(d time.Duration) (<-chan time.Time, func()) {
	t := c.e.cfg.Clock.NewTimer(d)
	return t.C(), func() { t.Stop() }
}

// runSchedules starts the engine's cron scheduler for the life of ctx,
// unless another Run loop of this engine already runs one, and returns a
// function that stops it and waits for it.
func (e *Engine) runSchedules(ctx context.Context) func() {
	e.scheds.mu.Lock()
	defer e.scheds.mu.Unlock()
	if e.scheds.running != nil {
		return func() {}
	}
	s, err := schedule.New(schedule.Config{Templates: e.cfg.Templates, Create: e.CreateScheduledTask,
		History: e.ScheduleHistory, Clock: scheduleClock{e}, Logger: e.log})
	if err != nil { // only a missing registry or function: a bug
		e.log.Error("cron schedules not started", "err", err)
		return func() {}
	}
	e.scheds.running = s
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
		e.scheds.mu.Lock()
		e.scheds.running = nil
		e.scheds.mu.Unlock()
	}
}

// Scheduler returns the cron scheduler a Run loop of this engine runs, or
// nil when none runs.
func (e *Engine) Scheduler() *schedule.Scheduler {
	e.scheds.mu.Lock()
	defer e.scheds.mu.Unlock()
	return e.scheds.running
}

// CreateScheduledTask creates the task of a schedule's tick (or returns the
// one its idempotency key already names): the template's version the tick
// names, the schedule's context, the tick's key and tags, initiator
// "tasker:schedule".
func (e *Engine) CreateScheduledTask(ctx context.Context, t *schedule.Tick) (int64, bool, error) {
	task, created, err := e.InitializeTask(ctx, &TaskRequest{
		Namespace: t.Template.Namespace, Name: t.Template.Name, Version: t.Template.Version,
		Context: t.Context(), Initiator: "tasker:schedule", SourceSystem: "schedule",
		Reason: "schedule " + t.Schedule.Name + " tick " + t.Time.UTC().Format(time.RFC3339),
		Tags:   t.Tags, IdempotencyKey: t.Key,
	})
	if err != nil {
		return 0, false, fmt.Errorf("%s: %w", t, err)
	}
	return task.ID, created, nil
}

// ScheduleHistory returns the latest tick of a schedule that has a task,
// looking at the template's most recent tasks (at most historyScanLimit;
// a schedule whose last task is older than that many others of its
// template reports none).
func (e *Engine) ScheduleHistory(ctx context.Context, namespace, name, sched string) (time.Time, int64, bool, error) {
	var best time.Time
	var bestID int64
	var after int64
	for seen := 0; seen < historyScanLimit; {
		tasks, err := e.store.TaskList(ctx, &store.TaskListParams{Namespace: namespace, Name: name, AfterID: after, Limit: 200})
		if err != nil {
			return time.Time{}, 0, false, fmt.Errorf("schedule history of %s/%s/%s: %w", namespace, name, sched, err)
		}
		for _, t := range tasks {
			if s, tick, ok := schedule.ParseTags(t.Tags); ok && s == sched && tick.After(best) {
				best, bestID = tick, t.ID
			}
			after = t.ID
		}
		seen += len(tasks)
		if len(tasks) < 200 || !best.IsZero() {
			break
		}
	}
	return best, bestID, !best.IsZero(), nil
}
