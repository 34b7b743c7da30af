// Package tracing reports tasker's work as OpenTelemetry spans: one span
// per task and one per step attempt, in the trace of the request that
// created the task (see internal/tracing/tracectx for how the trace context
// is kept with the task and how span ids are derived).
//
// Spans are built from the engine's lifecycle events after the fact, with
// the times the events carry, by one goroutine of a buffered bus
// subscription: the orchestration hot path never calls the SDK. The task
// span is reported by the process that finalizes the task (start: the
// task's creation, end: its completion, failure, block, cancellation or
// manual resolution); an attempt span by the process that ran the attempt
// (or recorded an external worker's result, or rescued the lease).
package tracing

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/internal/tracing/tracectx"
	"github.com/tasker-systems/tasker/taskertype"
)

// ScopeName is the instrumentation scope of tasker's spans.
const ScopeName = "github.com/tasker-systems/tasker"

// ServiceNameDefault is the service.name without $OTEL_SERVICE_NAME.
const ServiceNameDefault = "tasker"

// subscriberBuffer is the event subscription's buffer.
const subscriberBuffer = 1 << 16

// cacheMax bounds the tasks whose trace context is remembered.
const cacheMax = 8192

// lookupTimeout bounds one read of a task's trace context.
const lookupTimeout = 5 * time.Second

// TaskGetter reads a task (tasker's store).
type TaskGetter interface {
	TaskGet(ctx context.Context, taskID int64) (*taskertype.Task, error)
}

// forcedKey carries the ids the next span must have.
type forcedKey struct{}

type forcedIDs struct {
	trace trace.TraceID
	span  trace.SpanID
}

// idGenerator gives a span the ids derived for it (tracectx), and random
// ones to any other span.
type idGenerator struct{}

// NewIDs implements sdktrace.IDGenerator.
func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if f, ok := ctx.Value(forcedKey{}).(forcedIDs); ok {
		return f.trace, f.span
	}
	return tracectx.NewTraceID(), randomSpanID()
}

// NewSpanID implements sdktrace.IDGenerator.
func (idGenerator) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	if f, ok := ctx.Value(forcedKey{}).(forcedIDs); ok {
		return f.span
	}
	return randomSpanID()
}

func randomSpanID() trace.SpanID {
	var id trace.SpanID
	for !id.IsValid() {
		_, _ = rand.Read(id[:])
	}
	return id
}

// Options tunes New.
type Options struct {
	// ServiceName is the resource's service.name. Defaults to
	// $OTEL_SERVICE_NAME (or service.name in $OTEL_RESOURCE_ATTRIBUTES),
	// then ServiceNameDefault; $OTEL_RESOURCE_ATTRIBUTES adds attributes.
	ServiceName string
	// Logger receives lookup and export errors. Nil means slog.Default().
	Logger *slog.Logger
}

// Tracer reports the spans of one engine's work to an exporter.
type Tracer struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	log    *slog.Logger
	st     TaskGetter
	tasks  map[int64]*taskInfo
	starts map[attemptKey]time.Time
	stop   func()
}

type attemptKey struct {
	step    int64
	attempt int
}

// taskInfo is what spans need from a task; nil parent: no trace context.
type taskInfo struct {
	parent                   *tracectx.Parent
	namespace, name, version string
	created                  time.Time
}

// New returns a Tracer exporting to exp; Start it on an engine's bus.
func New(exp sdktrace.SpanExporter, opts Options) (*Tracer, error) {
	if exp == nil {
		return nil, errors.New("tracing: no exporter")
	}
	// Precedence, lowest first: the SDK's defaults, tasker's default name,
	// $OTEL_RESOURCE_ATTRIBUTES and $OTEL_SERVICE_NAME, Options.ServiceName.
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", ServiceNameDefault)))
	if err != nil {
		return nil, fmt.Errorf("tracing resource: %w", err)
	}
	if env, err := resource.New(context.Background(), resource.WithFromEnv()); err == nil {
		if merged, err := resource.Merge(res, env); err == nil {
			res = merged
		}
	}
	if opts.ServiceName != "" {
		if merged, err := resource.Merge(res, resource.NewSchemaless(attribute.String("service.name", opts.ServiceName))); err == nil {
			res = merged
		}
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res), sdktrace.WithIDGenerator(idGenerator{}),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	t := &Tracer{tp: tp, tracer: tp.Tracer(ScopeName), log: opts.Logger, tasks: map[int64]*taskInfo{},
		starts: map[attemptKey]time.Time{}}
	if t.log == nil {
		t.log = slog.Default()
	}
	return t, nil
}

// Start reports spans for the events of bus until Stop, reading tasks' trace
// contexts through st. Start once.
func (t *Tracer) Start(bus *engine.Bus, st TaskGetter) {
	t.st = st
	tracectx.Exporting(1)
	ch, cancel := bus.Subscribe(subscriberBuffer)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range ch {
			t.Observe(ev)
		}
	}()
	t.stop = func() { cancel(); <-done; tracectx.Exporting(-1) }
}

// Stop ends the subscription after the events already received, then
// flushes the spans and shuts the exporter down (bounded by ctx).
func (t *Tracer) Stop(ctx context.Context) error {
	if t.stop != nil {
		t.stop()
		t.stop = nil
	}
	return t.tp.Shutdown(ctx)
}

// ForceFlush exports the spans ended so far.
func (t *Tracer) ForceFlush(ctx context.Context) error { return t.tp.ForceFlush(ctx) }

// task returns the trace facts of a task, read once and remembered.
func (t *Tracer) task(id int64) *taskInfo {
	if ti, ok := t.tasks[id]; ok {
		return ti
	}
	if t.st == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	task, err := t.st.TaskGet(ctx, id)
	if err != nil {
		t.log.Warn("tracing: read task", "task_id", id, "err", err)
		return nil
	}
	ti := &taskInfo{namespace: task.Namespace, name: task.Name, version: task.Version, created: task.CreatedAt}
	if p, ok := tracectx.FromTags(task.Tags); ok && p.Flags.IsSampled() {
		ti.parent = &p
	}
	if len(t.tasks) >= cacheMax {
		for k := range t.tasks { // drop about half, arbitrarily
			delete(t.tasks, k)
			if len(t.tasks) < cacheMax/2 {
				break
			}
		}
	}
	t.tasks[id] = ti
	return ti
}

func (ti *taskInfo) attrs(taskID int64) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.Int64("tasker.task_id", taskID),
		attribute.String("tasker.template", ti.namespace+"/"+ti.name+"@"+ti.version),
		attribute.String("tasker.namespace", ti.namespace),
		attribute.String("tasker.task_name", ti.name),
		attribute.String("tasker.version", ti.version),
	}
}

// Observe turns one event into spans. Start calls it from its goroutine;
// call it directly only on a Tracer that was not started.
func (t *Tracer) Observe(ev taskertype.Event) {
	switch ev.Kind {
	case taskertype.EventStepStarted:
		attempt, _ := ev.Data["attempt"].(int)
		if len(t.starts) >= cacheMax*4 {
			clear(t.starts) // attempts whose end this process never saw
		}
		t.starts[attemptKey{ev.StepID, attempt}] = ev.Time
	case taskertype.EventStepCompleted, taskertype.EventStepFailed:
		t.attemptSpan(ev)
	case taskertype.EventTaskCompleted, taskertype.EventTaskFailed, taskertype.EventTaskBlocked,
		taskertype.EventTaskCancelled, taskertype.EventTaskResolved:
		t.taskSpan(ev)
	}
}

func (t *Tracer) attemptSpan(ev taskertype.Event) {
	attempt, _ := ev.Data["attempt"].(int)
	key := attemptKey{ev.StepID, attempt}
	start, seen := t.starts[key]
	delete(t.starts, key)
	ti := t.task(ev.TaskID)
	if ti == nil || ti.parent == nil {
		return
	}
	end := ev.Time
	if !seen {
		start = end
		if d, ok := ev.Data["duration_ms"].(int64); ok {
			start = end.Add(-time.Duration(d) * time.Millisecond)
		}
	}
	tid := ti.parent.TraceID
	parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: tracectx.TaskSpanID(tid, ev.TaskID),
		TraceFlags: ti.parent.Flags, Remote: true})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), parent)
	ctx = context.WithValue(ctx, forcedKey{}, forcedIDs{trace: tid,
		span: tracectx.AttemptSpanID(tid, ev.TaskID, ev.StepID, attempt)})
	handler, _ := ev.Data["handler_class"].(string)
	outcome := "success"
	if ev.Kind == taskertype.EventStepFailed {
		outcome, _ = ev.Data["kind"].(string)
		if outcome == "" {
			outcome = "failure"
		}
	}
	attrs := append(ti.attrs(ev.TaskID),
		attribute.String("tasker.step", ev.StepName),
		attribute.Int64("tasker.step_id", ev.StepID),
		attribute.Int("tasker.attempt", attempt),
		attribute.String("tasker.outcome", outcome))
	if handler != "" {
		attrs = append(attrs, attribute.String("tasker.handler_class", handler))
	}
	if p, ok := ev.Data["permanent"].(bool); ok {
		attrs = append(attrs, attribute.Bool("tasker.permanent", p))
	}
	_, span := t.tracer.Start(ctx, "step "+ev.StepName, trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attrs...))
	if ev.Kind == taskertype.EventStepFailed {
		msg, _ := ev.Data["error"].(string)
		span.SetStatus(codes.Error, msg)
	}
	span.End(trace.WithTimestamp(end))
}

func (t *Tracer) taskSpan(ev taskertype.Event) {
	ti := t.task(ev.TaskID)
	delete(t.tasks, ev.TaskID)
	if ti == nil || ti.parent == nil {
		return
	}
	tid := ti.parent.TraceID
	ctx := context.Background()
	if ti.parent.SpanID.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid,
			SpanID: ti.parent.SpanID, TraceFlags: ti.parent.Flags, Remote: true}))
	}
	ctx = context.WithValue(ctx, forcedKey{}, forcedIDs{trace: tid, span: tracectx.TaskSpanID(tid, ev.TaskID)})
	var outcome taskertype.TaskState
	switch ev.Kind {
	case taskertype.EventTaskCompleted:
		outcome = taskertype.TaskStateComplete
	case taskertype.EventTaskFailed:
		outcome = taskertype.TaskStateError
	case taskertype.EventTaskBlocked:
		outcome = taskertype.TaskStateBlocked
	case taskertype.EventTaskCancelled:
		outcome = taskertype.TaskStateCancelled
	default:
		outcome = "resolved_manually"
	}
	attrs := append(ti.attrs(ev.TaskID), attribute.String("tasker.outcome", string(outcome)))
	reason, _ := ev.Data["reason"].(string)
	if reason != "" {
		attrs = append(attrs, attribute.String("tasker.reason", reason))
	}
	kind := trace.SpanKindInternal
	if !ti.parent.SpanID.IsValid() {
		kind = trace.SpanKindServer
	}
	_, span := t.tracer.Start(ctx, "task "+ti.namespace+"/"+ti.name, trace.WithTimestamp(ti.created),
		trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
	if outcome == taskertype.TaskStateError || outcome == taskertype.TaskStateBlocked {
		span.SetStatus(codes.Error, reason)
	}
	span.End(trace.WithTimestamp(ev.Time))
}

// TagRequest returns req with a trace context tag: the span in ctx (the
// caller's), or, when newTrace is set, a new trace the task starts. req is
// returned as it is when it already has such a tag or there is nothing to
// add; otherwise a copy with its own Tags.
func TagRequest(ctx context.Context, req *engine.TaskRequest, newTrace bool) *engine.TaskRequest {
	if req == nil || tracectx.HasTag(req.Tags) {
		return req
	}
	var p tracectx.Parent
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		p = tracectx.Parent{TraceID: sc.TraceID(), SpanID: sc.SpanID(), Flags: sc.TraceFlags()}
	} else if newTrace {
		p = tracectx.Parent{TraceID: tracectx.NewTraceID(), Flags: trace.FlagsSampled}
	} else {
		return req
	}
	cp := *req
	cp.Tags = append(append(make([]string, 0, len(req.Tags)+1), req.Tags...), p.Tag())
	return &cp
}
