package taskertype

import (
	"context"
	"encoding/json"
)

// StepContext is everything a step handler receives for one attempt.
type StepContext struct {
	// TaskID identifies the task the step belongs to.
	TaskID int64
	// StepID identifies the workflow step.
	StepID int64
	// StepName is the step's name from the task template.
	StepName string
	// HandlerClass is the handler name the template gave for the step.
	HandlerClass string
	// Namespace, TaskName and Version identify the task template.
	Namespace, TaskName, Version string
	// Context is the task context (the JSON document the task was created with).
	Context json.RawMessage
	// Inputs are the step's own inputs (a JSON document, "{}" when none).
	Inputs json.RawMessage
	// HandlerConfig is the step's handler_config from the template, after
	// environment overrides were merged, decoded as encoding/json does
	// except for numbers a float64 cannot hold exactly (integers beyond
	// ±2^53, values out of its range such as 1e400): those are json.Number
	// with the template's value.
	HandlerConfig map[string]any
	// DependencyResults maps each parent step's name to its stored results.
	DependencyResults map[string]json.RawMessage
	// Attempt is this attempt's number, counting from 1.
	Attempt int
	// MaxAttempts is the most attempts the step may have, counting the first.
	MaxAttempts int
	// TraceParent is the W3C traceparent of this attempt ("" when the task
	// carries no trace context): send it on calls the handler makes so that
	// they join the task's trace (tasker:http does). See
	// docs/observability.md.
	TraceParent string
}

// StepHandler runs one attempt of a step. It returns the step's results
// (anything encoding/json can marshal, or a json.RawMessage) or an error.
// Return a *RetryableError (optionally with a server-requested delay) or a
// *PermanentError to control retries; any other error is retryable. A panic
// is recovered and recorded as a retryable failure.
type StepHandler interface {
	Handle(ctx context.Context, step *StepContext) (any, error)
}

// StepHandlerFunc adapts an ordinary function to StepHandler.
type StepHandlerFunc func(ctx context.Context, step *StepContext) (any, error)

// Handle calls f.
func (f StepHandlerFunc) Handle(ctx context.Context, step *StepContext) (any, error) {
	return f(ctx, step)
}
