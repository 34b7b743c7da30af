package metrics

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// queueCollector answers the queue gauges at scrape time from one
// aggregate query, reused for QueueStatsInterval.
type queueCollector struct {
	log                     *slog.Logger
	due, leased, total, age *prometheus.Desc
	errors                  prometheus.Counter
	mu                      sync.Mutex
	st                      QueueStatser
	at                      time.Time // when last was read
	last                    []float64 // due, leased, total, oldest age (nil: no answer)
	now                     func() time.Time
	interval                time.Duration
}

func newQueueCollector(log *slog.Logger) *queueCollector {
	return &queueCollector{
		log:    log,
		due:    prometheus.NewDesc(Namespace+"_queue_due_tasks", "Queued tasks a runner may claim now (due, no live lease).", nil, nil),
		leased: prometheus.NewDesc(Namespace+"_queue_leased_tasks", "Queued tasks held under a live lease (being handled).", nil, nil),
		total:  prometheus.NewDesc(Namespace+"_queue_tasks", "Every record of the durable queue (unfinished tasks, due or not).", nil, nil),
		age: prometheus.NewDesc(Namespace+"_queue_oldest_due_age_seconds",
			"How long the oldest due, unclaimed task has been due (0 when none is).", nil, nil),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: "queue_stats_errors_total",
			Help: "Queue-statistics queries that failed (the queue gauges are then absent from the scrape)."}),
		now:      time.Now,
		interval: QueueStatsInterval,
	}
}

func (q *queueCollector) setStore(st QueueStatser) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.st, q.last, q.at = st, nil, time.Time{}
}

// Describe implements prometheus.Collector.
func (q *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- q.due
	ch <- q.leased
	ch <- q.total
	ch <- q.age
	q.errors.Describe(ch)
}

// Collect implements prometheus.Collector.
func (q *queueCollector) Collect(ch chan<- prometheus.Metric) {
	q.errors.Collect(ch)
	vals := q.read()
	if vals == nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(q.due, prometheus.GaugeValue, vals[0])
	ch <- prometheus.MustNewConstMetric(q.leased, prometheus.GaugeValue, vals[1])
	ch <- prometheus.MustNewConstMetric(q.total, prometheus.GaugeValue, vals[2])
	ch <- prometheus.MustNewConstMetric(q.age, prometheus.GaugeValue, vals[3])
}

// read returns the last answer when it is fresh, else queries (one scrape
// at a time: concurrent scrapes wait for the same query).
func (q *queueCollector) read() []float64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.st == nil {
		return nil
	}
	now := q.now()
	if !q.at.IsZero() && now.Sub(q.at) < q.interval {
		return q.last // nil after a failure: not retried before the interval
	}
	ctx, cancel := context.WithTimeout(context.Background(), queueStatsTimeout)
	defer cancel()
	s, err := q.st.QueueStats(ctx, now)
	if err != nil {
		q.errors.Inc()
		q.log.Warn("metrics: queue statistics", "err", err)
		q.last, q.at = nil, now
		return nil
	}
	age := 0.0
	if s.OldestDue != nil {
		age = max(now.Sub(*s.OldestDue).Seconds(), 0)
	}
	q.last, q.at = []float64{float64(s.Due), float64(s.Leased), float64(s.Total), age}, now
	return q.last
}
