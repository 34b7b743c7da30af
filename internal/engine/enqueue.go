package engine

import (
	"context"
	"time"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/taskertype"
)

// Enqueue operations.
const (
	OperationEnqueue   = "enqueue"
	OperationReenqueue = "reenqueue"
)

// EnqueueRequest is what the TaskEnqueuer tells its handler after the state
// change that caused it (and the durable enqueue record) was committed.
type EnqueueRequest struct {
	TaskID       int64
	Operation    string // OperationEnqueue or OperationReenqueue
	Priority     int
	DelaySeconds float64
	Reason       string
	// Time is when the enqueue was committed.
	Time time.Time
}

// EnqueueHandler is a pluggable TaskEnqueuer backend. The durable record in
// the queue table is always written in the same transaction as the state
// change; the handler only announces it, so a crash between commit and the
// handler loses nothing: Go runners claim the record; with the event-based
// handler an outside consumer (the Rails gem's re-publisher) sweeps records
// that stay unclaimed and publishes them again.
type EnqueueHandler interface {
	HandleEnqueue(ctx context.Context, bus *Bus, req EnqueueRequest)
}

// DatabaseEnqueueHandler is the default: runners claim due records from the
// queue table. It wakes a local runner and also publishes the event, so Go
// subscribers can watch enqueues.
type DatabaseEnqueueHandler struct{ wake func() }

// HandleEnqueue implements EnqueueHandler.
func (h DatabaseEnqueueHandler) HandleEnqueue(_ context.Context, bus *Bus, req EnqueueRequest) {
	if h.wake != nil {
		h.wake()
	}
	bus.Publish(enqueueEvent(req))
}

// EventEnqueueHandler publishes task.enqueue / task.reenqueue events for an
// external job system (a Rails app's ActiveJob) to act on. No Go runner
// claims the records; they stay as the durable source of truth until the
// task is handled.
type EventEnqueueHandler struct{}

// HandleEnqueue implements EnqueueHandler.
func (EventEnqueueHandler) HandleEnqueue(_ context.Context, bus *Bus, req EnqueueRequest) {
	bus.Publish(enqueueEvent(req))
}

func enqueueEvent(req EnqueueRequest) taskertype.Event {
	kind := taskertype.EventTaskEnqueue
	if req.Operation == OperationReenqueue {
		kind = taskertype.EventTaskReenqueue
	}
	return taskertype.Event{Kind: kind, TaskID: req.TaskID, Time: req.Time, Data: map[string]any{
		"task_id": req.TaskID, "operation": req.Operation, "priority": req.Priority,
		"delay_seconds": req.DelaySeconds, "reason": req.Reason,
	}}
}

// enqueued tells the listening runners of every process (QueueAnnouncer)
// and the enqueue handler about an enqueue record committed by a state
// change.
func (e *Engine) enqueued(ctx context.Context, req EnqueueRequest) {
	e.announceQueue()
	e.handleEnqueue(ctx, req)
}

// announceQueue wakes the listening runners of every process, debounced by
// the store (a no-op on stores whose database notifies, or cannot).
func (e *Engine) announceQueue() {
	if e.announcer != nil {
		e.announcer.AnnounceQueue()
	}
}

// handleEnqueue tells the enqueue handler alone: the store announced the
// record itself (task creation).
func (e *Engine) handleEnqueue(ctx context.Context, req EnqueueRequest) {
	if req.Time.IsZero() {
		req.Time = e.now()
	}
	e.enqueuer.HandleEnqueue(ctx, e.bus, req)
}

// queueAnnouncerOf finds the QueueAnnouncer capability of st, looking
// through wrappers (Unwrap) like rateLimiterOf.
func queueAnnouncerOf(st store.Store) store.QueueAnnouncer {
	for range 8 {
		if a, ok := st.(store.QueueAnnouncer); ok {
			return a
		}
		u, ok := st.(interface{ Unwrap() store.Store })
		if !ok {
			return nil
		}
		st = u.Unwrap()
	}
	return nil
}
