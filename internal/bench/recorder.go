package bench

import (
	"slices"
	"sync"
	"time"

	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/taskertype"
)

// recorder collects lifecycle events into per-task timelines.
type recorder struct {
	parents map[string][]string
	width   int // steps per task: the size of a timeline's maps
	cancel  func()
	done    chan struct{}
	stopMu  sync.Once

	mu       sync.Mutex
	tasks    map[int64]*taskTimeline
	submits  int
	finished int
	failed   int
	steps    int
	last     time.Time
	expected int // 0 = not yet known
	allDone  chan struct{}
	closed   bool
	onFinish func()
}

type taskTimeline struct {
	submitted time.Time
	finished  time.Time
	ok        bool
	started   map[string]time.Time
	completed map[string]time.Time
}

// subscriberBuffer bounds the events in flight between the engine and the
// recorder; the recorder only appends to maps, so it keeps up easily.
const subscriberBuffer = 1 << 17

func newRecorder(bus *engine.Bus, tmpl *template.Template, _ int) *recorder {
	r := &recorder{parents: map[string][]string{}, tasks: map[int64]*taskTimeline{}, allDone: make(chan struct{}),
		done: make(chan struct{})}
	for _, st := range tmpl.Steps {
		r.parents[st.Name] = st.DependsOn
	}
	r.width = len(tmpl.Steps)
	ch, cancel := bus.Subscribe(subscriberBuffer, taskertype.EventStepStarted, taskertype.EventStepCompleted,
		taskertype.EventTaskCompleted, taskertype.EventTaskFailed, taskertype.EventTaskBlocked)
	r.cancel = cancel
	go func() {
		defer close(r.done)
		for ev := range ch {
			r.handle(ev)
		}
	}()
	return r
}

// stop ends the subscription and waits for the events already received.
func (r *recorder) stop() {
	r.stopMu.Do(func() {
		r.cancel()
		<-r.done
	})
}

func (r *recorder) timeline(id int64) *taskTimeline {
	t := r.tasks[id]
	if t == nil {
		t = &taskTimeline{started: make(map[string]time.Time, r.width), completed: make(map[string]time.Time, r.width)}
		r.tasks[id] = t
	}
	return t
}

func (r *recorder) handle(ev taskertype.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.timeline(ev.TaskID)
	switch ev.Kind {
	case taskertype.EventStepStarted:
		t.started[ev.StepName] = ev.Time
	case taskertype.EventStepCompleted:
		t.completed[ev.StepName] = ev.Time
		r.steps++
	default: // task completed, failed or blocked
		if !t.finished.IsZero() {
			return
		}
		t.finished, t.ok = ev.Time, ev.Kind == taskertype.EventTaskCompleted
		r.finished++
		if !t.ok {
			r.failed++
		}
		if ev.Time.After(r.last) {
			r.last = ev.Time
		}
		if r.onFinish != nil {
			r.onFinish()
		}
		r.checkDone()
	}
}

func (r *recorder) checkDone() {
	if !r.closed && r.expected > 0 && r.finished >= r.expected {
		r.closed = true
		close(r.allDone)
	}
}

// setOnFinish installs a callback run (under the recorder's lock) for every
// finished task.
func (r *recorder) setOnFinish(fn func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onFinish = fn
}

// submitted records when a task was asked for.
func (r *recorder) submitted(id int64, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.timeline(id).submitted = at
	r.submits++
}

// expect closes allDone once n tasks have finished.
func (r *recorder) expect(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.expected = n
	r.checkDone()
}

func (r *recorder) finishedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.finished
}

func (r *recorder) submittedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.submits
}

func (r *recorder) stepCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.steps
}

func (r *recorder) lastFinish() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last.IsZero() {
		return time.Now()
	}
	return r.last
}

func (r *recorder) counts() (completed, failed, steps int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.finished - r.failed, r.failed, r.steps
}

// latencies computes the handoff and end-to-end distributions of the tasks
// that completed.
func (r *recorder) latencies() (handoff, task Latency) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var hs, ts []time.Duration
	for _, t := range r.tasks {
		if !t.ok {
			continue
		}
		if !t.submitted.IsZero() {
			ts = append(ts, t.finished.Sub(t.submitted))
		}
		for name, started := range t.started {
			var last time.Time
			for _, p := range r.parents[name] {
				if c := t.completed[p]; c.After(last) {
					last = c
				}
			}
			if !last.IsZero() {
				hs = append(hs, max(started.Sub(last), 0))
			}
		}
	}
	return summarize(hs), summarize(ts)
}

// summarize sorts ds and returns its percentiles in milliseconds.
func summarize(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	slices.Sort(ds)
	q := func(p float64) float64 {
		return ms(ds[int(p*float64(len(ds)-1)+0.5)])
	}
	l := Latency{N: len(ds), P50: q(0.50), P95: q(0.95), P99: q(0.99), Max: ms(ds[len(ds)-1])}
	l.Quantiles = make([]float64, 101)
	for i := range l.Quantiles {
		l.Quantiles[i] = q(float64(i) / 100)
	}
	return l
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
