package taskertype

import (
	"errors"
	"fmt"
)

// ErrNotAttempted matches the error of a batch request that was valid but
// not written because the store failed for its chunk of the batch (the
// database went away, the context ended). Such a request may be sent again;
// with an idempotency key that is always safe.
var ErrNotAttempted = errors.New("task request not written")

// TaskResult is the outcome of one request of a batch (InitializeTasks):
// the task and whether it was created (false when its idempotency key
// already named a task, or an earlier request of the same batch had the
// same key), or Err, a *BatchItemError naming the request's index around
// the same typed error a single create returns.
type TaskResult struct {
	Task    *Task
	Created bool
	Err     error
}

// BatchItemError is the error of one request of a batch (InitializeTasks,
// POST /v1/tasks/batch, tasker task create --from-file): Index is the
// request's position in the batch (0-based) and Err the cause, the same
// typed error a single create returns (*ContextValidationError,
// *TemplateNotFoundError, *RequestError, ...), so errors.Is and errors.As
// see through it.
type BatchItemError struct {
	Index int
	Err   error
}

// Error implements error.
func (e *BatchItemError) Error() string { return fmt.Sprintf("request %d: %v", e.Index, e.Err) }

// Unwrap returns the cause.
func (e *BatchItemError) Unwrap() error { return e.Err }

// StoreFailureError is the cause of a batch request that was not written
// because its chunk's store call failed; it matches ErrNotAttempted and
// unwraps to the store's error.
type StoreFailureError struct {
	Err error
}

// Error implements error.
func (e *StoreFailureError) Error() string { return "task request not written: " + e.Err.Error() }

// Unwrap returns the store's error.
func (e *StoreFailureError) Unwrap() error { return e.Err }

// Is matches ErrNotAttempted.
func (e *StoreFailureError) Is(target error) bool { return target == ErrNotAttempted }
