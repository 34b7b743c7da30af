package taskertype

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Sentinel errors. Every typed error below matches one of them with errors.Is.
var (
	// ErrNotFound matches every "does not exist" error: templates, tasks, steps.
	ErrNotFound = errors.New("not found")
	// ErrInvalidTransition matches every refused state change.
	ErrInvalidTransition = errors.New("invalid transition")
	// ErrInvalidTemplate matches every template validation problem.
	ErrInvalidTemplate = errors.New("invalid task template")
	// ErrInvalidContext matches a task context that violates the template schema
	// or the size limit.
	ErrInvalidContext = errors.New("invalid task context")
	// ErrInvalidRequest matches a malformed task request (unknown bypass step,
	// missing handler, bad field).
	ErrInvalidRequest = errors.New("invalid task request")
)

// RetryableError tells the engine that this attempt failed and the step may
// be retried. After, when positive, is the delay the remote side asked for
// (an HTTP Retry-After); it wins over the computed backoff.
type RetryableError struct {
	Err   error
	After time.Duration
}

// Error implements error.
func (e *RetryableError) Error() string {
	if e.After > 0 {
		return fmt.Sprintf("retryable (retry after %s): %v", e.After, e.Err)
	}
	return fmt.Sprintf("retryable: %v", e.Err)
}

// Unwrap returns the wrapped error.
func (e *RetryableError) Unwrap() error { return e.Err }

// PermanentError tells the engine that the step must not be retried.
type PermanentError struct {
	Err error
}

// Error implements error.
func (e *PermanentError) Error() string { return fmt.Sprintf("permanent: %v", e.Err) }

// Unwrap returns the wrapped error.
func (e *PermanentError) Unwrap() error { return e.Err }

// Retryable wraps err as a retryable failure; after > 0 is a server-requested delay.
func Retryable(err error, after time.Duration) error { return &RetryableError{Err: err, After: after} }

// Permanent wraps err as a permanent failure: the step gets no more attempts.
func Permanent(err error) error { return &PermanentError{Err: err} }

// TemplateNotFoundError reports a template lookup miss and lists the versions
// that exist for the namespace/name (empty when none).
type TemplateNotFoundError struct {
	Namespace, Name, Version string
	Available                []string
}

// Error implements error.
func (e *TemplateNotFoundError) Error() string {
	want := e.Namespace + "/" + e.Name
	if e.Version != "" {
		want += "@" + e.Version
	}
	if len(e.Available) == 0 {
		return fmt.Sprintf("task template %s not found (no versions of %s/%s are loaded)", want, e.Namespace, e.Name)
	}
	return fmt.Sprintf("task template %s not found (available: %s)", want, strings.Join(e.Available, ", "))
}

// Is matches ErrNotFound.
func (e *TemplateNotFoundError) Is(target error) bool { return target == ErrNotFound }

// TaskNotFoundError reports an unknown task id.
type TaskNotFoundError struct{ TaskID int64 }

// Error implements error.
func (e *TaskNotFoundError) Error() string { return fmt.Sprintf("task %d not found", e.TaskID) }

// Is matches ErrNotFound.
func (e *TaskNotFoundError) Is(target error) bool { return target == ErrNotFound }

// StepNotFoundError reports an unknown step of a task (by id or by name).
type StepNotFoundError struct {
	TaskID int64
	StepID int64
	Name   string
}

// Error implements error.
func (e *StepNotFoundError) Error() string {
	if e.Name != "" {
		return fmt.Sprintf("step %q not found in task %d", e.Name, e.TaskID)
	}
	return fmt.Sprintf("step %d not found in task %d", e.StepID, e.TaskID)
}

// Is matches ErrNotFound.
func (e *StepNotFoundError) Is(target error) bool { return target == ErrNotFound }

// InvalidTransitionError reports a refused state change; nothing was written.
type InvalidTransitionError struct {
	Entity string // "task" or "step"
	ID     int64
	From   string
	Event  string
}

// Error implements error.
func (e *InvalidTransitionError) Error() string {
	return fmt.Sprintf("invalid transition: %s %d cannot %s from state %s", e.Entity, e.ID, e.Event, e.From)
}

// Is matches ErrInvalidTransition.
func (e *InvalidTransitionError) Is(target error) bool { return target == ErrInvalidTransition }

// TemplateError is one problem found while loading a task template. File,
// Line, Field and Step are set whenever they are known.
type TemplateError struct {
	File  string
	Line  int
	Field string
	Step  string
	Msg   string
}

// Error implements error, as "file:line: step "x": field: message".
func (e *TemplateError) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Step != "" {
		fmt.Fprintf(&b, "step %q: ", e.Step)
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Is matches ErrInvalidTemplate.
func (e *TemplateError) Is(target error) bool { return target == ErrInvalidTemplate }

// TemplateErrors collects every problem found in one load, across all files.
type TemplateErrors []*TemplateError

// Error implements error: one problem per line.
func (e TemplateErrors) Error() string {
	lines := make([]string, len(e))
	for i, te := range e {
		lines[i] = te.Error()
	}
	return strings.Join(lines, "\n")
}

// Is matches ErrInvalidTemplate.
func (e TemplateErrors) Is(target error) bool { return target == ErrInvalidTemplate && len(e) > 0 }

// ContextViolation is one failing path of a task context.
type ContextViolation struct {
	Path    string `json:"path"` // JSON pointer, "" for the document root
	Message string `json:"message"`
}

// ContextValidationError reports a task context that the template's schema
// (or the size limit) rejects, listing every failing path.
type ContextValidationError struct {
	Template   string // namespace/name@version
	Violations []ContextViolation
}

// Error implements error.
func (e *ContextValidationError) Error() string {
	parts := make([]string, len(e.Violations))
	for i, v := range e.Violations {
		p := v.Path
		if p == "" {
			p = "/"
		}
		parts[i] = p + ": " + v.Message
	}
	return fmt.Sprintf("task context for %s is invalid: %s", e.Template, strings.Join(parts, "; "))
}

// Is matches ErrInvalidContext.
func (e *ContextValidationError) Is(target error) bool { return target == ErrInvalidContext }

// RequestError reports a task request that cannot be initialized for a
// reason other than its context (a missing handler, an unknown bypass step).
type RequestError struct {
	Field string
	Step  string
	Msg   string
}

// Error implements error.
func (e *RequestError) Error() string {
	s := "invalid task request: "
	if e.Field != "" {
		s += e.Field + ": "
	}
	if e.Step != "" {
		s += fmt.Sprintf("step %q: ", e.Step)
	}
	return s + e.Msg
}

// Is matches ErrInvalidRequest.
func (e *RequestError) Is(target error) bool { return target == ErrInvalidRequest }
