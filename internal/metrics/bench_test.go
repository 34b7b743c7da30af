package metrics_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/internal/metrics"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/taskertype"
)

// nopStore answers QueueNextRunAt without a database, to time the wrapper.
type nopStore struct{ store.Store }

func (nopStore) QueueNextRunAt(context.Context, time.Time) (*time.Time, error) { return nil, nil }

// storeCallsPerStep approximates the store calls one step of a chain costs
// (claim, record, finalize, queue and lease calls shared across steps).
const storeCallsPerStep = 4

// BenchmarkPerStepOverhead measures what metrics add to one step: two more
// event deliveries (step.started, step.completed) counted by the
// subscriber, and storeCallsPerStep timed store calls. Compare with the
// engine's CPU per step in `tasker bench` (hundreds of microseconds).
func BenchmarkPerStepOverhead(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			bus := engine.NewBus()
			var st store.Store = nopStore{}
			var seen func() float64
			if on {
				m := metrics.New(metrics.Options{})
				reg := prometheus.NewRegistry()
				if err := m.Register(reg); err != nil {
					b.Fatal(err)
				}
				st = m.WrapStore(st)
				m.Start(bus, nil)
				defer m.Stop()
				seen = func() float64 {
					v, _ := valueB(reg, "tasker_metrics_events_total")
					return v
				}
			}
			ctx := context.Background()
			started := taskertype.Event{Kind: taskertype.EventStepStarted, TaskID: 1, StepID: 2, StepName: "s",
				Data: map[string]any{"attempt": 1, "handler_class": "tasker:noop"}}
			completed := taskertype.Event{Kind: taskertype.EventStepCompleted, TaskID: 1, StepID: 2, StepName: "s",
				Data: map[string]any{"attempt": 1, "duration_ms": int64(3), "handler_class": "tasker:noop"}}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				bus.Publish(started)
				for range storeCallsPerStep {
					_, _ = st.QueueNextRunAt(ctx, time.Time{})
				}
				bus.Publish(completed)
			}
			if seen != nil { // include the subscriber's work in the time
				for seen()+float64(bus.Dropped()) < float64(2*b.N) {
					time.Sleep(time.Millisecond)
				}
				if d := bus.Dropped(); d > 0 {
					b.Logf("%d of %d events dropped: the subscriber fell behind a publisher with no engine work", d, 2*b.N)
				}
			}
		})
	}
}

func valueB(g prometheus.Gatherer, name string) (float64, bool) {
	mfs, _ := g.Gather()
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetCounter().GetValue(), true
		}
	}
	return 0, false
}
