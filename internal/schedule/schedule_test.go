package schedule_test

import (
	"context"
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/internal/schedule"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// fakeClock is a Clock tests move by hand. Every timer the scheduler arms
// is announced on armed (its deadline), so a test knows the scheduler is
// asleep and until when.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
	armed  chan time.Time
}

type fakeTimer struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(now time.Time) *fakeClock {
	return &fakeClock{now: now, armed: make(chan time.Time, 100)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) (<-chan time.Time, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := fakeTimer{at: c.now.Add(d), ch: make(chan time.Time, 1)}
	c.timers = append(c.timers, t)
	c.armed <- t.at
	return t.ch, func() {}
}

// Set moves the clock to now and fires the timers due by then.
func (c *fakeClock) Set(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = now
	kept := c.timers[:0]
	for _, t := range c.timers {
		if !t.at.After(now) {
			t.ch <- now
		} else {
			kept = append(kept, t)
		}
	}
	c.timers = kept
}

// waitArmed returns the deadline of the next timer the scheduler arms.
func (c *fakeClock) waitArmed(t *testing.T) time.Time {
	t.Helper()
	select {
	case at := <-c.armed:
		return at
	case <-time.After(30 * time.Second):
		t.Fatal("the scheduler armed no timer")
		return time.Time{}
	}
}

func eachStore(t *testing.T, fn func(t *testing.T, st store.Store)) {
	t.Run("sqlite", func(t *testing.T) { t.Parallel(); fn(t, testdb.SQLite(t)) })
	t.Run("postgres", func(t *testing.T) { t.Parallel(); fn(t, testdb.Postgres(t)) })
}

// registry holds template "probe" with one schedule.
func registry(t *testing.T, cron string, missed template.MissedPolicy) *template.Registry {
	t.Helper()
	reg := template.NewRegistry()
	require.NoError(t, reg.Add(&template.Template{Name: "probe", Version: "1.0.0",
		Steps:     []*template.StepTemplate{{Name: "a", HandlerClass: "tasker:noop"}},
		Schedules: []*template.Schedule{{Name: "tick", Cron: cron, Missed: missed, Enabled: true}}}))
	return reg
}

// runner is one scheduler on its own engine over the shared store.
func startScheduler(t *testing.T, st store.Store, reg *template.Registry, clock *fakeClock) (*schedule.Scheduler, func()) {
	t.Helper()
	eng, err := engine.New(engine.Config{Store: st, Templates: reg, Now: clock.Now})
	require.NoError(t, err)
	s, err := schedule.New(schedule.Config{Templates: reg, Create: eng.CreateScheduledTask, History: eng.ScheduleHistory, Clock: clock})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return s, stop
}

// ticks returns the tick of every task of the probe template, sorted, and
// fails on a tick with two tasks.
func ticks(t *testing.T, st store.Store) []time.Time {
	t.Helper()
	tasks, err := st.TaskList(context.Background(), &store.TaskListParams{Namespace: "default", Name: "probe", Limit: 10000})
	require.NoError(t, err)
	seen := map[time.Time]int64{}
	var out []time.Time
	for _, task := range tasks {
		name, tick, ok := schedule.ParseTags(task.Tags)
		require.True(t, ok, "task %d has no schedule tags: %v", task.ID, task.Tags)
		require.Equal(t, "tick", name)
		require.Equal(t, schedule.Key("default", "probe", "tick", tick), task.IdempotencyKey)
		if other, dup := seen[tick]; dup {
			t.Fatalf("tick %s has two tasks: %d and %d", tick, other, task.ID)
		}
		seen[tick] = task.ID
		out = append(out, tick)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

var t0 = time.Date(2026, 6, 1, 12, 0, 3, 0, time.UTC) // 3 s after a 10 s tick

// Three schedulers over one database create one task per tick, each armed
// with a timer to the next tick (not a poll).
func TestOneTaskPerTickAcrossSchedulers(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		reg := registry(t, "@every 10s", template.MissedSkip)
		clocks := []*fakeClock{newFakeClock(t0), newFakeClock(t0), newFakeClock(t0)}
		for _, c := range clocks {
			startScheduler(t, st, reg, c)
		}
		// Started 3 s after the 12:00:00 tick: on time (grace 5 s).
		want := []time.Time{t0.Add(-3 * time.Second)}
		for i := range 5 {
			for _, c := range clocks {
				at := c.waitArmed(t)
				require.Equal(t, t0.Add(time.Duration(7+10*i)*time.Second), at, "timer to the next tick")
			}
			for _, c := range clocks {
				c.Set(t0.Add(time.Duration(7+10*i) * time.Second))
			}
			want = append(want, t0.Add(time.Duration(7+10*i)*time.Second))
		}
		for _, c := range clocks {
			c.waitArmed(t) // each created the last tick and sleeps again
		}
		require.Equal(t, want, ticks(t, st))
	})
}

// A scheduler that wakes late (slow machine, slow database) creates every
// tick that came due while it ran, oldest first.
func TestLateWakeCreatesEveryTick(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		reg := registry(t, "@every 10s", template.MissedSkip)
		c := newFakeClock(t0.Add(time.Second)) // 4 s after 12:00:00: on time (grace 5 s)
		startScheduler(t, st, reg, c)
		require.Equal(t, t0.Add(7*time.Second), c.waitArmed(t))
		c.Set(t0.Add(7*time.Second + 35*time.Second)) // 12:00:45: ticks :10 :20 :30 :40 are due
		c.waitArmed(t)
		base := t0.Add(-3 * time.Second)
		require.Equal(t, []time.Time{base, base.Add(10 * time.Second), base.Add(20 * time.Second),
			base.Add(30 * time.Second), base.Add(40 * time.Second)}, ticks(t, st))
	})
}

// Ticks due while no scheduler ran: skip creates nothing for them,
// catch_up creates the latest one once; a catch_up schedule with no task
// yet starts at its next tick.
func TestMissedTicks(t *testing.T) {
	for _, tc := range []struct {
		missed template.MissedPolicy
		want   int // tasks after the restart
	}{{template.MissedSkip, 1}, {template.MissedCatchUp, 2}} {
		t.Run(string(tc.missed), func(t *testing.T) {
			eachStore(t, func(t *testing.T, st store.Store) {
				reg := registry(t, "0 * * * *", tc.missed) // hourly, grace 1 min
				hour := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
				// Never ran, 30 min after a tick: nothing either way.
				c := newFakeClock(hour.Add(30 * time.Minute))
				_, stop := startScheduler(t, st, reg, c)
				require.Equal(t, hour.Add(time.Hour), c.waitArmed(t))
				require.Empty(t, ticks(t, st))
				c.Set(hour.Add(time.Hour)) // the 13:00 tick
				c.waitArmed(t)
				stop()
				require.Equal(t, []time.Time{hour.Add(time.Hour)}, ticks(t, st))

				// Down from 13:10 to 16:30: 14:00, 15:00 and 16:00 were missed.
				c = newFakeClock(hour.Add(4*time.Hour + 30*time.Minute))
				_, stop = startScheduler(t, st, reg, c)
				c.waitArmed(t)
				got := ticks(t, st)
				require.Len(t, got, tc.want)
				if tc.missed == template.MissedCatchUp {
					require.Equal(t, hour.Add(4*time.Hour), got[1], "the latest missed tick")
				}
				stop()
				// A second start creates nothing more.
				c = newFakeClock(hour.Add(4*time.Hour + 40*time.Minute))
				_, stop = startScheduler(t, st, reg, c)
				c.waitArmed(t)
				stop()
				require.Len(t, ticks(t, st), tc.want)

				// 30 s after a tick is on time for both policies.
				c = newFakeClock(hour.Add(5*time.Hour + 30*time.Second))
				_, stop = startScheduler(t, st, reg, c)
				c.waitArmed(t)
				stop()
				got = ticks(t, st)
				require.Equal(t, hour.Add(5*time.Hour), got[len(got)-1])
			})
		})
	}
}

// failingCreates is a real store whose task creations fail while failing
// is set, as while the database is unreachable.
type failingCreates struct {
	store.Store
	failing atomic.Bool
}

var errUnreachable = errors.New("connection refused")

func (s *failingCreates) TaskCreate(ctx context.Context, p *store.TaskCreateParams) (*store.TaskCreateResult, error) {
	if s.failing.Load() {
		return nil, errUnreachable
	}
	return s.Store.TaskCreate(ctx, p)
}

func (s *failingCreates) TaskCreateMany(ctx context.Context, ps []*store.TaskCreateParams) ([]*store.TaskCreateResult, error) {
	if s.failing.Load() {
		return nil, errUnreachable
	}
	return s.Store.TaskCreateMany(ctx, ps)
}

// A tick whose creation fails is tried again after RetryMin, doubling,
// and the ticks that came due meanwhile are created too.
func TestFailedCreationIsRetried(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		reg := registry(t, "@every 10s", template.MissedSkip)
		flaky := &failingCreates{Store: st}
		c := newFakeClock(t0.Add(4 * time.Second)) // 12:00:07: 12:00:00 missed (grace 5 s); next tick 12:00:10
		startScheduler(t, flaky, reg, c)
		require.Equal(t, t0.Add(7*time.Second), c.waitArmed(t))
		flaky.failing.Store(true)
		c.Set(t0.Add(7 * time.Second))
		// First failure at 12:00:10: retry after RetryMin.
		require.Equal(t, t0.Add(7*time.Second+schedule.RetryMin), c.waitArmed(t))
		c.Set(t0.Add(7*time.Second + schedule.RetryMin))
		// Second failure: the wait doubles.
		require.Equal(t, t0.Add(7*time.Second+3*schedule.RetryMin), c.waitArmed(t))
		require.Empty(t, ticks(t, st))
		flaky.failing.Store(false)
		c.Set(t0.Add(18 * time.Second)) // 12:00:21: the 12:00:10 and 12:00:20 ticks
		require.Equal(t, t0.Add(27*time.Second), c.waitArmed(t))
		base := t0.Add(-3 * time.Second)
		require.Equal(t, []time.Time{base.Add(10 * time.Second), base.Add(20 * time.Second)}, ticks(t, st))
	})
}

// Only the highest version of a template is scheduled, and its ticks keep
// the key of the earlier version: a deploy that adds a version creates no
// second task for a tick.
func TestHighestVersionScheduled(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		reg := registry(t, "@every 10s", template.MissedSkip) // probe 1.0.0
		c := newFakeClock(t0)
		startScheduler(t, st, reg, c)
		c.waitArmed(t)
		// A second process already holds 1.1.0 (a rolling deploy).
		reg2 := registry(t, "@every 10s", template.MissedSkip)
		require.NoError(t, reg2.Add(&template.Template{Name: "probe", Version: "1.1.0",
			Steps:     []*template.StepTemplate{{Name: "a", HandlerClass: "tasker:noop"}},
			Schedules: []*template.Schedule{{Name: "tick", Cron: "@every 10s", Enabled: true}}}))
		require.Len(t, schedule.Active(reg2), 1)
		require.Equal(t, "1.1.0", schedule.Active(reg2)[0].Template.Version)
		c2 := newFakeClock(t0)
		startScheduler(t, st, reg2, c2)
		c2.waitArmed(t)
		c.Set(t0.Add(7 * time.Second))
		c2.Set(t0.Add(7 * time.Second))
		c.waitArmed(t)
		c2.waitArmed(t)
		got := ticks(t, st)
		require.Len(t, got, 2, "12:00:00 and 12:00:10, once each")
	})
}
