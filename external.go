package tasker

import (
	"context"
	"time"

	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/taskertype"
)

// Types of the pull protocol, defined in taskertype.
type (
	// ClaimResult answers Worker.ClaimSteps: the task and the claimed steps.
	ClaimResult = taskertype.ClaimResult
	// ExternalTask is the task part of a claim.
	ExternalTask = taskertype.ExternalTask
	// ExternalStep is one claimed attempt of a step.
	ExternalStep = taskertype.ExternalStep
	// ExternalResult is the result of one claimed attempt.
	ExternalResult = taskertype.ExternalResult
	// ExternalError is a failed attempt as the worker reports it.
	ExternalError = taskertype.ExternalError
	// ReportResult answers Worker.ReportResults.
	ReportResult = taskertype.ReportResult
	// ReportedResult says what became of one reported result.
	ReportedResult = taskertype.ReportedResult
	// ExtendResult answers Worker.ExtendLeases.
	ExtendResult = taskertype.ExtendResult
)

// Statuses of ReportedResult.Status.
const (
	// ReportRecorded: the result was recorded; State is the step's new state.
	ReportRecorded = taskertype.ReportRecorded
	// ReportDiscarded: the caller no longer holds this attempt.
	ReportDiscarded = taskertype.ReportDiscarded
)

// Worker is the external-worker (pull) protocol: how a process that cannot
// be called from Go (the Ruby gem, through libtasker or `tasker serve`)
// drives a task. The worker claims steps, runs its handlers, reports
// results and asks the finalizer what happens next; every decision is made
// by the engine. Each call is stateless; see docs/api.md ("The pull
// protocol") for which are safe to repeat. A Worker is safe for concurrent
// use and lives as long as its Client.
type Worker struct {
	engine *engine.Engine
	store  store.Store
}

// Worker returns the client's pull-protocol handle.
func (c *Client) Worker() *Worker { return &Worker{engine: c.engine, store: c.store} }

// ClaimParams is the input of Worker.ClaimSteps.
type ClaimParams struct {
	// TaskID is the task to claim steps of.
	TaskID int64
	// Owner names the worker process; the leases are held under it.
	// Required.
	Owner string
	// Limit caps the steps claimed; <= 0 means the task's
	// max_parallel_steps.
	Limit int
}

// ClaimSteps starts the task if it is pending or waiting for a retry and
// claims up to p.Limit ready steps for p.Owner under a lease of StepLease.
// An attempt is counted for each step.
func (w *Worker) ClaimSteps(ctx context.Context, p ClaimParams) (*ClaimResult, error) {
	return w.engine.ClaimSteps(ctx, p.TaskID, p.Owner, p.Limit)
}

// ReportParams is the input of Worker.ReportResults and
// Worker.ReportAndFinalize.
type ReportParams struct {
	// TaskID is the task the attempts belong to.
	TaskID int64
	// Owner is the worker that claimed them. Required.
	Owner string
	// Results are the attempts' results (or releases).
	Results []ExternalResult
}

// ReportResults records the results of attempts p.Owner claimed, deciding
// each outcome as the Go coordinator does. Results of attempts the owner no
// longer holds are discarded and reported as such.
func (w *Worker) ReportResults(ctx context.Context, p ReportParams) (*ReportResult, error) {
	return w.engine.ReportResults(ctx, p.TaskID, p.Owner, p.Results, false)
}

// ReportAndFinalize is ReportResults followed by Finalize in one
// transaction, for a worker's last report (nothing left in flight): the
// finalizer's decision is in ReportResult.Final (outcome "continue": claim
// again).
func (w *Worker) ReportAndFinalize(ctx context.Context, p ReportParams) (*ReportResult, error) {
	return w.engine.ReportResults(ctx, p.TaskID, p.Owner, p.Results, true)
}

// ExtendLeases pushes the leases of the steps owner still holds by
// StepLease.
func (w *Worker) ExtendLeases(ctx context.Context, owner string, stepIDs []int64) (*ExtendResult, error) {
	return w.engine.ExtendLeases(ctx, owner, stepIDs)
}

// Finalize runs the TaskFinalizer once for a task an external worker drove
// and returns the same HandleResult as Client.Handle. Outcome "continue"
// means steps are ready: claim again.
func (w *Worker) Finalize(ctx context.Context, taskID int64, owner string) (*HandleResult, error) {
	return w.engine.Finalize(ctx, taskID, owner)
}

// YieldParams is the input of Worker.Yield.
type YieldParams struct {
	// TaskID is the task to hand back.
	TaskID int64
	// Owner is the worker that was driving it.
	Owner string
	// Reason is recorded on the transition ("" for a default).
	Reason string
}

// Yield hands a task p.Owner was driving back to the queue, due now (the
// worker is shutting down; it released its unfinished attempts with
// ExternalResult.Release first). A task that is neither in progress nor
// pending is left alone (outcome "none").
func (w *Worker) Yield(ctx context.Context, p YieldParams) (*HandleResult, error) {
	return w.engine.Yield(ctx, p.TaskID, p.Owner, p.Reason)
}

// RescueExpired returns steps whose lease expired to the pool. Client.Run
// does it periodically; processes without Go runners (external workers)
// call it. It returns how many steps it rescued (at most 100 per call).
func (w *Worker) RescueExpired(ctx context.Context) (int, error) { return w.engine.RescueExpired(ctx) }

// StepLease is how long a claimed step stays held without ExtendLeases
// (Config.StepLease).
func (w *Worker) StepLease() time.Duration { return w.engine.StepLease() }

// Owner is the client's own lease owner name (Config.Owner).
func (w *Worker) Owner() string { return w.engine.Owner() }

// QueueClaimParams is the input of Worker.QueueClaim.
type QueueClaimParams struct {
	// Owner names the claiming process. Required.
	Owner string
	// Limit caps the records claimed (nothing is claimed when it is <= 0).
	Limit int
	// Lease is how long the records stay held (their lease ends at
	// now+Lease).
	Lease time.Duration
	// Grace skips records due for less than this (run_at > now-Grace):
	// their events were just published.
	Grace time.Duration
}

// QueueClaim leases up to p.Limit enqueue records for p.Owner, among those
// due for at least p.Grace. With Config.EventEnqueue it lets an external job
// system re-publish enqueues that were committed but never turned into jobs
// (the process died between commit and publish): claim, publish, and let
// the lease lapse or QueueAck once handled.
func (w *Worker) QueueClaim(ctx context.Context, p QueueClaimParams) ([]*QueueEntry, error) {
	es, err := w.engine.QueueClaim(ctx, p.Owner, p.Limit, p.Lease, p.Grace)
	return publicQueueEntries(es), err
}

// QueueAck deletes the task's enqueue record if owner still holds its lease.
func (w *Worker) QueueAck(ctx context.Context, taskID int64, owner string) error {
	return w.store.QueueAck(ctx, taskID, owner)
}

// SubscribeBuffered is Subscribe with a buffer of the given size (the
// default 1024 when buffer <= 0).
func (c *Client) SubscribeBuffered(buffer int, kinds ...EventKind) (<-chan Event, func()) {
	return c.engine.Bus().Subscribe(buffer, kinds...)
}

// EventsDropped counts events dropped so far because a subscriber's buffer
// was full.
func (c *Client) EventsDropped() int64 { return c.engine.Bus().Dropped() }
