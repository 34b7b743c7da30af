package tasker

import (
	"context"
	"time"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/taskertype"
)

// The external-worker (pull) API: how a process that cannot be called from
// Go (the Ruby gem, through libtasker or `tasker serve`) drives a task. The
// worker claims steps, runs its handlers, reports results and asks the
// finalizer what happens next; every decision is made by the engine. Each
// call is stateless and safe to repeat. See docs/api.md ("Pull API").

// Types of the pull API, defined in taskertype.
type (
	// ClaimResult answers ClaimSteps: the task and the claimed steps.
	ClaimResult = taskertype.ClaimResult
	// ExternalTask is the task part of a claim.
	ExternalTask = taskertype.ExternalTask
	// ExternalStep is one claimed attempt of a step.
	ExternalStep = taskertype.ExternalStep
	// ExternalResult is the result of one claimed attempt.
	ExternalResult = taskertype.ExternalResult
	// ExternalError is a failed attempt as the worker reports it.
	ExternalError = taskertype.ExternalError
	// ReportResult answers ReportResults.
	ReportResult = taskertype.ReportResult
	// ReportedResult says what became of one reported result.
	ReportedResult = taskertype.ReportedResult
	// ExtendResult answers ExtendLeases.
	ExtendResult = taskertype.ExtendResult
)

// ClaimSteps starts the task if it is pending or waiting for a retry and
// claims up to limit ready steps for owner under a lease (limit <= 0 means
// the task's max_parallel_steps). An attempt is counted for each step.
func (c *Client) ClaimSteps(ctx context.Context, taskID int64, owner string, limit int) (*ClaimResult, error) {
	return c.engine.ClaimSteps(ctx, taskID, owner, limit)
}

// ReportResults records the results of attempts owner claimed, deciding each
// outcome as the Go coordinator does. Results of attempts owner no longer
// holds are discarded and reported as such.
func (c *Client) ReportResults(ctx context.Context, taskID int64, owner string, results []ExternalResult) (*ReportResult, error) {
	return c.engine.ReportResults(ctx, taskID, owner, results, false)
}

// ReportAndFinalize is ReportResults followed by Finalize in one transaction,
// for a worker's last report (nothing left in flight): the finalizer's
// decision is in ReportResult.Final (outcome "continue": claim again).
func (c *Client) ReportAndFinalize(ctx context.Context, taskID int64, owner string, results []ExternalResult) (*ReportResult, error) {
	return c.engine.ReportResults(ctx, taskID, owner, results, true)
}

// ExtendLeases pushes the leases of the steps owner still holds.
func (c *Client) ExtendLeases(ctx context.Context, owner string, stepIDs []int64) (*ExtendResult, error) {
	return c.engine.ExtendLeases(ctx, owner, stepIDs)
}

// Finalize runs the TaskFinalizer once for a task an external worker drove
// and returns the same HandleResult as Handle. Outcome "continue" means
// steps are ready: claim again.
func (c *Client) Finalize(ctx context.Context, taskID int64, owner string) (*HandleResult, error) {
	return c.engine.Finalize(ctx, taskID, owner)
}

// Yield hands a task owner was driving back to the queue, due now (the
// worker is shutting down; it released its unfinished attempts with
// ExternalResult.Release first). A task that is neither in progress nor
// pending is left alone (outcome "none").
func (c *Client) Yield(ctx context.Context, taskID int64, owner, reason string) (*HandleResult, error) {
	return c.engine.Yield(ctx, taskID, owner, reason)
}

// RescueExpired returns steps whose lease expired to the pool. Run does it
// periodically; processes without Go runners (external workers) call it.
// It returns how many steps it rescued (at most 100 per call).
func (c *Client) RescueExpired(ctx context.Context) (int, error) { return c.engine.RescueExpired(ctx) }

// StepLease is how long a claimed step stays held without ExtendLeases.
func (c *Client) StepLease() time.Duration { return c.engine.StepLease() }

// Owner is this client's lease owner name.
func (c *Client) Owner() string { return c.engine.Owner() }

// QueueClaim leases up to limit enqueue records for owner until now+lease,
// among those due for at least grace (run_at <= now-grace). With EventEnqueue it lets an external job system re-publish
// enqueues that were committed but never turned into jobs (the process died
// between commit and publish): claim, publish, and let the lease lapse or
// QueueAck once handled.
func (c *Client) QueueClaim(ctx context.Context, owner string, limit int, lease, grace time.Duration) ([]*QueueEntry, error) {
	now := time.Now().UTC()
	es, err := c.store.QueueClaim(ctx, &store.QueueClaimParams{Owner: owner, Limit: limit, Now: now, LeaseUntil: now.Add(lease),
		DueBefore: now.Add(-grace)})
	return publicQueueEntries(es), err
}

// QueueAck deletes the task's enqueue record if owner still holds its lease.
func (c *Client) QueueAck(ctx context.Context, taskID int64, owner string) error {
	return c.store.QueueAck(ctx, taskID, owner)
}

// SubscribeBuffered is Subscribe with a buffer of the given size (the
// default 1024 when buffer <= 0).
func (c *Client) SubscribeBuffered(buffer int, kinds ...EventKind) (<-chan Event, func()) {
	return c.engine.Bus().Subscribe(buffer, kinds...)
}

// EventsDropped counts events dropped so far because a subscriber's buffer
// was full.
func (c *Client) EventsDropped() int64 { return c.engine.Bus().Dropped() }
