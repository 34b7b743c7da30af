// Package metrics exposes the engine's work as Prometheus metrics.
//
// Counts and durations are derived from the lifecycle events on the
// engine's bus (internal/engine/events.go), read by one goroutine of a
// buffered subscription, so the orchestration hot path does no more than
// publish one more copy of each event. Database latency comes from a store
// wrapper (WrapStore) that times every call; the queue gauges are read by
// one aggregate query at scrape time, at most every QueueStatsInterval.
// Every metric name starts with "tasker_"; docs/observability.md lists them.
package metrics

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/internal/store/sqlcore"
	"github.com/tasker-systems/tasker/taskertype"
)

// Namespace prefixes every metric name.
const Namespace = "tasker"

// QueueStatsInterval is the shortest interval between two queue-statistics
// queries: scrapes closer together reuse the last answer.
const QueueStatsInterval = 5 * time.Second

// queueStatsTimeout bounds one queue-statistics query.
const queueStatsTimeout = 2 * time.Second

// subscriberBuffer is the event subscription's buffer: deep enough to
// absorb bursts (a 10,000-step fan-out publishes 10,000 step.started at
// once) while the goroutine counts them.
const subscriberBuffer = 1 << 16

// StepDurationBuckets are the step duration histogram's buckets, in
// seconds: 5 ms to 10 minutes.
var StepDurationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 600}

// DBDurationBuckets are the database call histogram's buckets, in seconds:
// 100 µs to 10 s.
var DBDurationBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10}

// QueueStatser is what the queue gauges need from a store:
// the postgres and sqlite stores provide it (sqlcore.Core.QueueStats).
type QueueStatser interface {
	QueueStats(ctx context.Context, now time.Time) (*sqlcore.QueueStats, error)
}

// Metrics holds tasker's collectors. Create it with New, wrap the store
// with WrapStore before the engine is built, Register it, then Start it on
// the engine's bus; Stop ends the event subscription.
type Metrics struct {
	tasksCreated   *prometheus.CounterVec
	tasksFinished  *prometheus.CounterVec
	operator       *prometheus.CounterVec
	stepAttempts   *prometheus.CounterVec
	stepFailures   *prometheus.CounterVec
	stepRetries    *prometheus.CounterVec
	stepDuration   *prometheus.HistogramVec
	leaseRescues   *prometheus.CounterVec
	eventsSeen     prometheus.Counter
	tasksPruned    prometheus.Counter
	dbDuration     *prometheus.HistogramVec
	dbErrors       *prometheus.CounterVec
	eventsDropped  prometheus.CounterFunc
	queue          *queueCollector
	busMu          sync.Mutex
	bus            *engine.Bus
	stop           func()
	perClass       map[string]*classMetrics // the subscriber goroutine's cache
	log            *slog.Logger
	registeredWith prometheus.Registerer
}

// classMetrics caches one handler class's children, so that counting an
// event costs no label hashing.
type classMetrics struct {
	attempts, retries, rescues prometheus.Counter
	durationOK, durationFailed prometheus.Observer
}

// Options tunes New.
type Options struct {
	// Logger receives queue-statistics errors. Nil means slog.Default().
	Logger *slog.Logger
}

// New returns unregistered collectors.
func New(opts Options) *Metrics {
	m := &Metrics{log: opts.Logger, perClass: map[string]*classMetrics{}}
	if m.log == nil {
		m.log = slog.Default()
	}
	m.tasksCreated = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "tasks_created_total",
		Help: "Tasks created by this process (task.initialized), by template namespace and name."}, []string{"namespace", "name"})
	m.tasksFinished = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "tasks_finished_total",
		Help: "Tasks finalized by this process, by template namespace and name and final state (complete, error, blocked)."},
		[]string{"namespace", "name", "state"})
	m.operator = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "operator_actions_total",
		Help: "Operator actions applied by this process (task_cancelled, task_resolved, step_retried, step_resolved)."},
		[]string{"action"})
	m.stepAttempts = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "step_attempts_total",
		Help: "Step attempts claimed (step.started), by handler class."}, []string{"handler_class"})
	m.stepFailures = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "step_failures_total",
		Help: "Failed step attempts (step.failed), by handler class, error kind (retryable, permanent, timeout, panic, lease_expired) and whether the step failed for good."},
		[]string{"handler_class", "kind", "permanent"})
	m.stepRetries = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "step_retries_total",
		Help: "Retries scheduled after a failed attempt (step.retry_scheduled), by handler class."}, []string{"handler_class"})
	m.stepDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "step_duration_seconds",
		Help:    "How long step handlers ran (millisecond resolution), by handler class and outcome (success, failure).",
		Buckets: StepDurationBuckets}, []string{"handler_class", "outcome"})
	m.leaseRescues = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "lease_rescues_total",
		Help: "Step attempts whose lease expired and that this process's rescuer returned to the pool, by handler class."},
		[]string{"handler_class"})
	m.tasksPruned = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "tasks_pruned_total",
		Help: "Finished tasks this process deleted because their retention passed (or tasker prune --older-than)."})
	m.eventsSeen = prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "metrics_events_total",
		Help: "Lifecycle events the metrics subscriber counted."})
	m.dbDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "db_call_duration_seconds",
		Help:    "Latency of store calls (one call may be several statements in one transaction), by operation.",
		Buckets: DBDurationBuckets}, []string{"operation"})
	m.dbErrors = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "db_call_errors_total",
		Help: "Store calls that returned an error (not-found answers included), by operation."}, []string{"operation"})
	m.eventsDropped = prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: Namespace, Name: "events_dropped_total",
		Help: "Lifecycle events dropped because a subscriber's buffer was full (all subscribers of this process)."},
		func() float64 {
			m.busMu.Lock()
			defer m.busMu.Unlock()
			if m.bus == nil {
				return 0
			}
			return float64(m.bus.Dropped())
		})
	m.queue = newQueueCollector(m.log)
	return m
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.tasksCreated, m.tasksFinished, m.operator, m.stepAttempts, m.stepFailures,
		m.stepRetries, m.stepDuration, m.leaseRescues, m.eventsSeen, m.dbDuration, m.dbErrors, m.eventsDropped, m.queue,
		m.tasksPruned}
}

// Register registers every collector on reg; on error none stays
// registered. A Metrics registers on one registerer at most.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	var done []prometheus.Collector
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			for _, d := range done {
				reg.Unregister(d)
			}
			return err
		}
		done = append(done, c)
	}
	m.registeredWith = reg
	return nil
}

// Unregister removes the collectors from the registerer Register used.
func (m *Metrics) Unregister() {
	if m.registeredWith == nil {
		return
	}
	for _, c := range m.collectors() {
		m.registeredWith.Unregister(c)
	}
	m.registeredWith = nil
}

// Start subscribes to bus and counts its events until Stop; st, when not
// nil, answers the queue gauges. Start once.
func (m *Metrics) Start(bus *engine.Bus, st QueueStatser) {
	m.busMu.Lock()
	m.bus = bus
	m.busMu.Unlock()
	m.queue.setStore(st)
	ch, cancel := bus.Subscribe(subscriberBuffer)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range ch {
			m.Observe(ev)
		}
	}()
	m.stop = func() { cancel(); <-done }
}

// Stop ends the subscription after the events already received are
// counted. The collectors stay registered (their values frozen, the queue
// gauges gone).
func (m *Metrics) Stop() {
	if m.stop != nil {
		m.stop()
		m.stop = nil
	}
	m.queue.setStore(nil)
}

func (m *Metrics) class(ev *taskertype.Event) *classMetrics {
	hc, _ := ev.Data["handler_class"].(string)
	if c, ok := m.perClass[hc]; ok {
		return c
	}
	c := &classMetrics{
		attempts:       m.stepAttempts.WithLabelValues(hc),
		retries:        m.stepRetries.WithLabelValues(hc),
		rescues:        m.leaseRescues.WithLabelValues(hc),
		durationOK:     m.stepDuration.WithLabelValues(hc, "success"),
		durationFailed: m.stepDuration.WithLabelValues(hc, "failure"),
	}
	m.perClass[hc] = c
	return c
}

// Observe counts one event. Start calls it from its goroutine; call it
// directly only on a Metrics that was not started (it is not safe for
// concurrent use).
func (m *Metrics) Observe(ev taskertype.Event) {
	m.eventsSeen.Inc()
	switch ev.Kind {
	case taskertype.EventStepStarted:
		m.class(&ev).attempts.Inc()
	case taskertype.EventStepCompleted:
		if d, ok := ev.Data["duration_ms"].(int64); ok {
			m.class(&ev).durationOK.Observe(float64(d) / 1000)
		}
	case taskertype.EventStepFailed:
		c := m.class(&ev)
		kind, _ := ev.Data["kind"].(string)
		permanent, _ := ev.Data["permanent"].(bool)
		hc, _ := ev.Data["handler_class"].(string)
		perm := "false"
		if permanent {
			perm = "true"
		}
		m.stepFailures.WithLabelValues(hc, kind, perm).Inc()
		if kind == "lease_expired" {
			c.rescues.Inc()
		}
		if d, ok := ev.Data["duration_ms"].(int64); ok {
			c.durationFailed.Observe(float64(d) / 1000)
		}
	case taskertype.EventStepRetryScheduled:
		m.class(&ev).retries.Inc()
	case taskertype.EventTaskInitialized:
		ns, _ := ev.Data["namespace"].(string)
		name, _ := ev.Data["name"].(string)
		m.tasksCreated.WithLabelValues(ns, name).Inc()
	case taskertype.EventTaskCompleted, taskertype.EventTaskFailed, taskertype.EventTaskBlocked:
		ns, _ := ev.Data["namespace"].(string)
		name, _ := ev.Data["name"].(string)
		state := taskertype.TaskStateComplete
		switch ev.Kind {
		case taskertype.EventTaskFailed:
			state = taskertype.TaskStateError
		case taskertype.EventTaskBlocked:
			state = taskertype.TaskStateBlocked
		}
		m.tasksFinished.WithLabelValues(ns, name, string(state)).Inc()
	case taskertype.EventTaskCancelled:
		m.operator.WithLabelValues("task_cancelled").Inc()
	case taskertype.EventTaskResolved:
		m.operator.WithLabelValues("task_resolved").Inc()
	case taskertype.EventStepRetried:
		m.operator.WithLabelValues("step_retried").Inc()
	case taskertype.EventStepResolved:
		m.operator.WithLabelValues("step_resolved").Inc()
	}
}
