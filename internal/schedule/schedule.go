// Package schedule runs the cron schedules that task templates declare
// (template.Schedule): for each due tick it asks for one task of the
// template with an idempotency key derived from the tick, so that any
// number of runners evaluating the same schedules create exactly one task
// per tick (the store returns the existing task for a known key).
//
// # The key
//
// The key is "tasker:schedule:<namespace>/<name>/<schedule>@<tick in UTC,
// RFC 3339>" (see Key). The template's version is deliberately not part of
// it: during a rolling deploy runners hold different versions of the same
// template, and with the version in the key each version would create its
// own task for the same tick. Only the highest version of each template is
// evaluated (the one an unversioned lookup returns), so a tick is run by
// the version the runner that got there first holds.
//
// # Missed ticks
//
// When a Scheduler starts (and when a template is added while it runs) it
// looks at the latest tick at or before now. A tick found at most its grace
// (Schedule.Grace: half an interval, at most a minute) after it was due is on
// time and is created under either policy. An older one was missed while no
// runner was up: MissedSkip creates nothing for it; MissedCatchUp creates it
// (the latest missed tick, once: the key makes a second creation a no-op),
// unless the schedule has no task yet (History reports none), in which case
// the schedule is new and starts at its next tick. Ticks that come due while
// the Scheduler runs are all created, oldest first, even when it falls
// behind (a slow database), up to MaxBurst per schedule per wakeup; older
// ones are dropped with a warning.
//
// # Waking
//
// The Scheduler keeps its schedules in a heap by next tick and sleeps on one
// timer until the earliest; it never polls. Time comes from a Clock, so
// tests drive it without sleeping.
package schedule

import (
	"cmp"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/taskertype"
)

// Defaults for Config.
const (
	// MaxBurstDefault is how many ticks of one schedule a wakeup creates at
	// most when the Scheduler fell behind.
	MaxBurstDefault = 60
	// RetryMin and RetryMax bound the wait before a failed creation is tried
	// again (doubling in between).
	RetryMin = 500 * time.Millisecond
	RetryMax = 30 * time.Second
)

// Tag prefixes of the tags a scheduled task carries.
const (
	TagSchedule = "schedule:"
	TagTick     = "schedule_tick:"
)

// KeyPrefix starts every scheduled task's idempotency key.
const KeyPrefix = "tasker:schedule:"

// Key returns the idempotency key of a schedule's tick: the same for every
// runner and every version of the template.
func Key(namespace, name, schedule string, tick time.Time) string {
	return KeyPrefix + namespace + "/" + name + "/" + schedule + "@" + tick.UTC().Format(time.RFC3339)
}

// Tags returns the tags of a scheduled task.
func Tags(schedule string, tick time.Time) []string {
	return []string{TagSchedule + schedule, TagTick + tick.UTC().Format(time.RFC3339)}
}

// ParseTags returns the schedule and tick a task's tags name, if any.
func ParseTags(tags []string) (schedule string, tick time.Time, ok bool) {
	var gotS, gotT bool
	for _, t := range tags {
		if s, found := strings.CutPrefix(t, TagSchedule); found {
			schedule, gotS = s, true
		} else if s, found := strings.CutPrefix(t, TagTick); found {
			if tt, err := time.Parse(time.RFC3339, s); err == nil {
				tick, gotT = tt.UTC(), true
			}
		}
	}
	return schedule, tick, gotS && gotT
}

// Clock is the Scheduler's time source.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// After returns a channel that receives once d has passed on this
	// clock, and a function that stops the timer.
	After(d time.Duration) (<-chan time.Time, func())
}

// RealClock is a Clock whose Now is now (time.Now when nil) and whose
// timers are the runtime's.
func RealClock(now func() time.Time) Clock {
	if now == nil {
		now = time.Now
	}
	return realClock{now: now}
}

type realClock struct{ now func() time.Time }

func (c realClock) Now() time.Time { return c.now() }

func (c realClock) After(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}

// Tick is one task a schedule asks for.
type Tick struct {
	Template *template.Template
	Schedule *template.Schedule
	// Time is the tick, in UTC.
	Time time.Time
	// Key is Key(...) of the tick; Tags its tags.
	Key  string
	Tags []string
}

// Context returns the task context of the tick.
func (t *Tick) Context() json.RawMessage { return t.Schedule.Context }

// CreateFunc creates the task of a tick (or finds the one its key names)
// and returns its id and whether this call created it.
type CreateFunc func(ctx context.Context, t *Tick) (taskID int64, created bool, err error)

// HistoryFunc returns the latest tick of a schedule that has a task, if
// any.
type HistoryFunc func(ctx context.Context, namespace, name, schedule string) (tick time.Time, taskID int64, found bool, err error)

// Config configures a Scheduler.
type Config struct {
	// Templates holds the schedules. Required.
	Templates *template.Registry
	// Create makes a tick's task. Required.
	Create CreateFunc
	// History tells a catch_up schedule that never ran from one that
	// missed ticks. Without it a catch_up schedule always creates its
	// latest missed tick.
	History HistoryFunc
	// Clock defaults to RealClock(time.Now).
	Clock Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// MaxBurst defaults to MaxBurstDefault.
	MaxBurst int
}

// Scheduler creates the tasks of every schedule of the registered
// templates at their ticks. Run it in every runner.
type Scheduler struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	entries map[string]*entry // by namespace/name/schedule
	queue   entryHeap
}

// entry is one schedule's state.
type entry struct {
	key   string // namespace/name/schedule
	tmpl  *template.Template
	sched *template.Schedule
	// next is the next tick to create.
	next time.Time
	// last is the latest tick this Scheduler created or found created,
	// with its task.
	last     time.Time
	lastTask int64
	// retry is the wait after a failed creation (0 when none failed),
	// retryAt when it ends.
	retry   time.Duration
	retryAt time.Time
	index   int // in the heap
}

// at returns when the entry has work: its next tick, or the end of the
// wait after a failed creation.
func (e *entry) at() time.Time {
	if e.retryAt.After(e.next) {
		return e.retryAt
	}
	return e.next
}

// New returns a Scheduler.
func New(cfg Config) (*Scheduler, error) {
	if cfg.Templates == nil || cfg.Create == nil {
		return nil, errors.New("schedule: Config.Templates and Config.Create are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = RealClock(nil)
	}
	cfg.Logger = cmp.Or(cfg.Logger, slog.Default())
	cfg.MaxBurst = cmp.Or(cfg.MaxBurst, MaxBurstDefault)
	return &Scheduler{cfg: cfg, log: cfg.Logger, entries: map[string]*entry{}}, nil
}

// Active returns the schedules a scheduler evaluates: the enabled
// schedules of the highest version of each template, by namespace, name
// and schedule name.
func Active(reg *template.Registry) []Ref {
	var out []Ref
	list := reg.List() // sorted; the last version of a name comes last
	for i, t := range list {
		if i+1 < len(list) && list[i+1].Namespace == t.Namespace && list[i+1].Name == t.Name {
			continue
		}
		for _, s := range t.Schedules {
			if s.Enabled {
				out = append(out, Ref{Template: t, Schedule: s})
			}
		}
	}
	return out
}

// Ref names one schedule of one template.
type Ref struct {
	Template *template.Template
	Schedule *template.Schedule
}

// ID returns "namespace/name/schedule".
func (r Ref) ID() string { return r.Template.Namespace + "/" + r.Template.Name + "/" + r.Schedule.Name }

// Run creates the tasks of every due tick until ctx ends. It returns nil
// when ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	synced := false
	var seen uint64
	for ctx.Err() == nil {
		gen, changed := s.cfg.Templates.Watch()
		if !synced || gen != seen {
			s.sync(ctx) // at the start, and when a template was added
			synced, seen = true, gen
		}
		s.Wake(ctx)
		var fire <-chan time.Time
		stop := func() {}
		if at, ok := s.NextWake(); ok {
			fire, stop = s.cfg.Clock.After(max(at.Sub(s.cfg.Clock.Now()), 0))
		}
		select {
		case <-ctx.Done():
			stop()
			return nil
		case <-changed:
			stop()
		case <-fire:
		}
	}
	return nil
}

// NextWake returns when the Scheduler next has work: the earliest next
// tick (or retry of a failed creation); false when no schedule will ever
// tick.
func (s *Scheduler) NextWake() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return time.Time{}, false
	}
	return s.queue[0].at(), true
}

// sync brings the entries in line with the registry: new schedules are
// started (with the missed-tick policy), removed ones dropped, changed
// ones (another expression or zone) restarted.
func (s *Scheduler) sync(ctx context.Context) {
	refs := Active(s.cfg.Templates)
	want := make(map[string]Ref, len(refs))
	for _, r := range refs {
		want[r.ID()] = r
	}
	s.mu.Lock()
	for id, e := range s.entries {
		r, ok := want[id]
		if ok && r.Schedule.Cron == e.sched.Cron && r.Schedule.TimeZone == e.sched.TimeZone {
			e.tmpl, e.sched = r.Template, r.Schedule // a new version with the same timing
			delete(want, id)
			continue
		}
		if e.index >= 0 {
			heap.Remove(&s.queue, e.index)
		}
		delete(s.entries, id)
	}
	s.mu.Unlock()
	now := s.cfg.Clock.Now()
	for _, r := range refs {
		if _, ok := want[r.ID()]; !ok {
			continue
		}
		e := &entry{key: r.ID(), tmpl: r.Template, sched: r.Schedule}
		s.start(ctx, e, now)
		s.mu.Lock()
		s.entries[e.key] = e
		if e.next.IsZero() {
			e.index = -1 // never ticks
		} else {
			heap.Push(&s.queue, e)
		}
		s.mu.Unlock()
	}
}

// start applies the missed-tick policy to the latest tick at or before now
// and sets the entry's next tick.
func (s *Scheduler) start(ctx context.Context, e *entry, now time.Time) {
	e.next = e.sched.Next(now)
	p := e.sched.Prev(now)
	if p.IsZero() {
		return
	}
	onTime := now.Sub(p) <= e.sched.Grace(p)
	if !onTime && e.sched.Missed != template.MissedCatchUp {
		return
	}
	if !onTime && s.cfg.History != nil {
		last, id, found, err := s.cfg.History(ctx, e.tmpl.Namespace, e.tmpl.Name, e.sched.Name)
		switch {
		case err != nil:
			s.log.Warn("schedule history; catching up anyway", "schedule", e.key, "err", err)
		case !found:
			return // a new schedule: nothing was missed
		case !last.Before(p):
			e.last, e.lastTask = last, id
			return
		}
	}
	if !s.create(ctx, e, p) {
		s.failed(e, p, now)
	}
}

// Wake creates the ticks due at the clock's now. Run calls it when its
// timer fires; tests may call it directly.
func (s *Scheduler) Wake(ctx context.Context) {
	now := s.cfg.Clock.Now()
	for ctx.Err() == nil {
		s.mu.Lock()
		if len(s.queue) == 0 || s.queue[0].at().After(now) {
			s.mu.Unlock()
			return
		}
		e := s.queue[0]
		s.mu.Unlock()
		s.due(ctx, e, now)
		s.mu.Lock()
		if e.index >= 0 && e.index < len(s.queue) && s.queue[e.index] == e {
			if e.next.IsZero() {
				heap.Remove(&s.queue, e.index) // never ticks again
			} else {
				heap.Fix(&s.queue, e.index)
			}
		}
		s.mu.Unlock()
	}
}

// due creates the ticks of e from e.next to now, oldest first, and moves
// e.next past now; after a failed creation it leaves e.next at that tick
// and sets e.retryAt.
func (s *Scheduler) due(ctx context.Context, e *entry, now time.Time) {
	ticks := make([]time.Time, 0, 1)
	next := e.next // ends as the first tick after now
	for ; !next.IsZero() && !next.After(now); next = e.sched.Next(next) {
		ticks = append(ticks, next)
		if len(ticks) > s.cfg.MaxBurst {
			ticks = ticks[1:]
		}
	}
	if len(ticks) > 0 && !ticks[0].Equal(e.next) {
		s.log.Warn("schedule fell behind; older ticks dropped", "schedule", e.key, "from", e.next, "kept_from", ticks[0])
	}
	for _, t := range ticks {
		if !s.create(ctx, e, t) {
			s.failed(e, t, now)
			return
		}
	}
	s.mu.Lock()
	e.retry, e.retryAt, e.next = 0, time.Time{}, next
	s.mu.Unlock()
}

// failed leaves e at tick t, to be tried again after a growing wait.
func (s *Scheduler) failed(e *entry, t, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e.next = t
	e.retry = min(max(2*e.retry, RetryMin), RetryMax)
	e.retryAt = now.Add(e.retry)
}

// create asks for the task of tick t; it reports false when it should be
// tried again (a store error). A tick the engine refuses (the context no
// longer fits, a handler is missing) is logged and counted as done.
func (s *Scheduler) create(ctx context.Context, e *entry, t time.Time) bool {
	tick := &Tick{Template: e.tmpl, Schedule: e.sched, Time: t,
		Key: Key(e.tmpl.Namespace, e.tmpl.Name, e.sched.Name, t), Tags: Tags(e.sched.Name, t)}
	id, created, err := s.cfg.Create(ctx, tick)
	if err != nil {
		if refused(err) {
			s.log.Error("schedule tick refused; skipped", "schedule", e.key, "tick", t, "err", err)
			return true
		}
		if ctx.Err() == nil {
			s.log.Warn("create scheduled task; will retry", "schedule", e.key, "tick", t, "err", err)
		}
		return false
	}
	s.mu.Lock()
	if !t.Before(e.last) {
		e.last, e.lastTask = t, id
	}
	s.mu.Unlock()
	if created {
		s.log.Debug("scheduled task created", "schedule", e.key, "tick", t, "task_id", id)
	}
	return true
}

// refused reports an error that trying again cannot fix.
func refused(err error) bool {
	for _, sentinel := range []error{taskertype.ErrInvalidRequest, taskertype.ErrInvalidContext,
		taskertype.ErrInvalidTemplate, taskertype.ErrNotFound} {
		if errors.Is(err, sentinel) {
			return true
		}
	}
	return false
}

// State is what a Scheduler knows of one schedule.
type State struct {
	// Next is the next tick it will create.
	Next time.Time
	// Last is the latest tick it created or found created (zero when
	// none), and LastTaskID that tick's task.
	Last       time.Time
	LastTaskID int64
}

// States returns the state of every schedule the Scheduler evaluates, by
// Ref.ID.
func (s *Scheduler) States() map[string]State {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]State, len(s.entries))
	for id, e := range s.entries {
		out[id] = State{Next: e.next, Last: e.last, LastTaskID: e.lastTask}
	}
	return out
}

// entryHeap orders entries by next tick.
type entryHeap []*entry

func (h entryHeap) Len() int           { return len(h) }
func (h entryHeap) Less(i, j int) bool { return h[i].at().Before(h[j].at()) }
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*h = old[:len(old)-1]
	return e
}

// String renders a tick for logs and errors.
func (t *Tick) String() string {
	return fmt.Sprintf("%s/%s schedule %s tick %s", t.Template.Namespace, t.Template.Name, t.Schedule.Name,
		t.Time.UTC().Format(time.RFC3339))
}
