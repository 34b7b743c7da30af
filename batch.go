package tasker

import (
	"context"

	"github.com/tasker-systems/tasker/internal/tracing"
	"github.com/tasker-systems/tasker/taskertype"
)

// Batch creation (InitializeTasks) and its result and error types.
type (
	// TaskResult is the outcome of one request of InitializeTasks: Task
	// and Created as InitializeTask returns them, or Err, a
	// *BatchItemError naming the request's index.
	TaskResult = taskertype.TaskResult
	// BatchItemError is the error of one request of a batch: its index and
	// the typed error a single InitializeTask would have returned
	// (errors.Is and errors.As see through it).
	BatchItemError = taskertype.BatchItemError
	// StoreFailureError is the cause of a valid batch request that was not
	// written because the database failed for its part of the batch.
	StoreFailureError = taskertype.StoreFailureError
)

// ErrNotAttempted matches the error of a valid batch request that was not
// written because the database failed (see InitializeTasks); sending it
// again is safe with an idempotency key.
var ErrNotAttempted = taskertype.ErrNotAttempted

// BatchChunkSize is how many tasks InitializeTasks writes per transaction.
const BatchChunkSize = 1000

// InitializeTasks creates many tasks: each request is validated like
// InitializeTask's, and the valid ones are written BatchChunkSize per
// transaction with a few statements each, which is many times faster than
// one InitializeTask per task. It returns one TaskResult per request, in
// the order of reqs; a request that fails (unknown template, context that
// violates the schema, bad field) gets its own error, with its index, and
// does not stop the others. Idempotency keys are honoured per request: a
// key that exists returns that task with Created false, and a key repeated
// within reqs returns its first request's task. Events are published as
// InitializeTask publishes them.
//
// The error is not nil only when nothing was written because the database
// failed (results are then nil and the whole batch may be sent again). If
// the database fails after some chunks were written, the requests of the
// failed and later chunks get an error matching ErrNotAttempted.
//
// Every task joins the trace of the span in ctx, as with InitializeTask.
func (c *Client) InitializeTasks(ctx context.Context, reqs []*TaskRequest) ([]TaskResult, error) {
	tagged := make([]*TaskRequest, len(reqs))
	for i, req := range reqs {
		tagged[i] = tracing.TagRequest(ctx, req, c.tracer != nil)
	}
	return c.engine.InitializeTasks(ctx, tagged)
}
