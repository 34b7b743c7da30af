package faultinject

import (
	"fmt"
	"slices"
	"time"
)

// RecUp is written by a runner once its client is open, right before its
// Run loop (and so its cron scheduler) starts.
const RecUp = "up"

// RunnerSpan is the life of one runner process: Up when it logged RecUp,
// Down when it was reaped (it ran nothing after).
type RunnerSpan struct {
	Owner    string
	Up, Down time.Time
}

// ScheduledTask is one task a schedule created, read from the database.
type ScheduledTask struct {
	TaskID int64
	Tick   time.Time
}

// CronSpec is the schedule a cron run checks: an @every schedule of
// Interval (whole seconds) with its missed-tick policy.
type CronSpec struct {
	Name     string
	Interval time.Duration
	CatchUp  bool
}

// CronSlack bounds how long a runner may take to start its scheduler after
// RecUp (Startup) and to create a due tick's task (Create), so that a tick
// counts as owed only when some runner surely had the time to create it.
type CronSlack struct {
	Startup, Create time.Duration
}

// clockSkew tolerates the rounding between a process's clock reads.
const clockSkew = 100 * time.Millisecond

// CheckTicks checks what a schedule created while runners were killed and
// restarted, and returns the violations (nil when none):
//
//   - no tick has two tasks, and every tick is on the schedule's grid;
//   - no tick between the first and last created is missing while some
//     runner was up from at least slack.Startup before it until at least
//     slack.Create after it;
//   - a tick no runner was up for within its grace (half the interval) was
//     created only under catch_up, and only as the latest tick at the start
//     of a runner: at most one such tick per runner start, none under skip.
func CheckTicks(spec CronSpec, tasks []ScheduledTask, spans []RunnerSpan, slack CronSlack) []string {
	var out []string
	fail := func(format string, args ...any) { out = append(out, spec.Name+": "+fmt.Sprintf(format, args...)) }
	if len(tasks) == 0 {
		fail("no task was created")
		return out
	}
	byTick := map[time.Time][]int64{}
	var ticks []time.Time
	for _, t := range tasks {
		tick := t.Tick.UTC()
		if len(byTick[tick]) == 0 {
			ticks = append(ticks, tick)
		}
		byTick[tick] = append(byTick[tick], t.TaskID)
		if tick.UnixNano()%spec.Interval.Nanoseconds() != 0 {
			fail("tick %s (task %d) is not on the %s grid", stamp(tick), t.TaskID, spec.Interval)
		}
	}
	slices.SortFunc(ticks, func(a, b time.Time) int { return a.Compare(b) })
	for _, tick := range ticks {
		if ids := byTick[tick]; len(ids) > 1 {
			fail("tick %s has %d tasks: %v", stamp(tick), len(ids), ids)
		}
	}
	// Coverage.
	for t := ticks[0]; !t.After(ticks[len(ticks)-1]); t = t.Add(spec.Interval) {
		if len(byTick[t]) > 0 {
			continue
		}
		for _, s := range spans {
			if !s.Up.Add(slack.Startup).After(t) && !s.Down.Before(t.Add(slack.Create)) {
				fail("tick %s has no task although runner %s was up from %s to %s", stamp(t), s.Owner, stamp(s.Up), stamp(s.Down))
				break
			}
		}
	}
	// Late creations.
	grace := spec.Interval / 2
	caughtUp := map[int]time.Time{}
	for _, t := range ticks {
		onTime := false
		for _, s := range spans {
			if !s.Up.After(t.Add(grace+clockSkew)) && !s.Down.Before(t) {
				onTime = true
				break
			}
		}
		if onTime {
			continue
		}
		if !spec.CatchUp {
			fail("tick %s was created (task %v) although no runner was up within its grace: skip creates nothing for a missed tick",
				stamp(t), byTick[t])
			continue
		}
		// The latest tick at some moment of a start: t <= that moment < t + interval.
		owner := -1
		for i, s := range spans {
			if !t.After(s.Up.Add(slack.Startup)) && s.Up.Before(t.Add(spec.Interval+clockSkew)) {
				if owner < 0 || (!caughtUp[owner].IsZero() && caughtUp[i].IsZero()) {
					owner = i
				}
			}
		}
		switch {
		case owner < 0:
			fail("tick %s was caught up (task %v) but is not the latest tick at any runner's start", stamp(t), byTick[t])
		case !caughtUp[owner].IsZero():
			fail("runner %s's start caught up two ticks: %s and %s", spans[owner].Owner, stamp(caughtUp[owner]), stamp(t))
		default:
			caughtUp[owner] = t
		}
	}
	return out
}

// stamp renders a time for a violation.
func stamp(t time.Time) string { return t.UTC().Format("15:04:05.000") }
