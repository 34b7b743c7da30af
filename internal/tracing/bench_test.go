package tracing_test

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/internal/tracing"
	"github.com/tasker-systems/tasker/internal/tracing/tracectx"
	"github.com/tasker-systems/tasker/taskertype"
)

// discard is an exporter that drops every span.
type discard struct{}

func (discard) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (discard) Shutdown(context.Context) error                             { return nil }

// oneTask answers every TaskGet with one traced task.
type oneTask struct{ tags []string }

func (o oneTask) TaskGet(_ context.Context, id int64) (*taskertype.Task, error) {
	return &taskertype.Task{ID: id, Namespace: "ns", Name: "n", Version: "1.0.0", Tags: o.tags, CreatedAt: time.Now()}, nil
}

// BenchmarkAttemptSpan is what tracing on costs per step attempt, off the
// hot path: the subscriber's work for step.started and step.completed and
// the SDK's span (exported in batches to an exporter that drops them).
func BenchmarkAttemptSpan(b *testing.B) {
	tr, err := tracing.New(discard{}, tracing.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Stop(context.Background())
	p, _ := tracectx.Parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false)
	tr.Start(engine.NewBus(), oneTask{tags: []string{p.Tag()}}) // nothing is published on it: Observe is called here only
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tr.Observe(taskertype.Event{Kind: taskertype.EventStepStarted, TaskID: 1, StepID: int64(i), StepName: "s", Time: now,
			Data: map[string]any{"attempt": 1, "handler_class": "h"}})
		tr.Observe(taskertype.Event{Kind: taskertype.EventStepCompleted, TaskID: 1, StepID: int64(i), StepName: "s", Time: now,
			Data: map[string]any{"attempt": 1, "duration_ms": int64(2), "handler_class": "h"}})
	}
}
