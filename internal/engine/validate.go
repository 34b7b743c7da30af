package engine

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/tasker-systems/tasker/internal/jsonvalid"
	"github.com/tasker-systems/tasker/taskertype"
)

// checkText refuses text a database cannot store portably: invalid UTF-8,
// and NUL, which PostgreSQL rejects in text and jsonb (SQLite would store
// it, so both refuse it). Checking here turns what would be a database
// error into a typed invalid-request error, before anything is written.
func checkText(field, v string) error {
	if err := jsonvalid.CheckString(v); err != nil {
		return &taskertype.RequestError{Field: field, Msg: err.Error()}
	}
	return nil
}

// MaxIdempotencyKeyBytes bounds an idempotency key: PostgreSQL's unique
// index on it refuses entries over 2704 bytes.
const MaxIdempotencyKeyBytes = 1024

// checkRequestText applies checkText to every free-text field of a request
// and checks step inputs the way ValidateContext checks the context.
// templateKey names the request's template (namespace/name@version) in a
// context error.
func checkRequestText(req *TaskRequest, templateKey string) error {
	for _, f := range []struct{ name, v string }{
		{"initiator", req.Initiator}, {"source_system", req.SourceSystem}, {"reason", req.Reason},
		{"idempotency_key", req.IdempotencyKey},
	} {
		if err := checkText(f.name, f.v); err != nil {
			return err
		}
	}
	if len(req.IdempotencyKey) > MaxIdempotencyKeyBytes {
		return &taskertype.RequestError{Field: "idempotency_key",
			Msg: fmt.Sprintf("is %d bytes long, more than the limit of %d", len(req.IdempotencyKey), MaxIdempotencyKeyBytes)}
	}
	// The context's schema is checked later (ValidateContext); what a
	// database cannot store (lone surrogates, huge numbers, duplicate keys)
	// is refused here, the same way as over HTTP (internal/jsonvalid).
	var je *jsonvalid.Error
	if err := jsonvalid.Check(req.Context); errors.As(err, &je) {
		return &taskertype.ContextValidationError{Template: templateKey,
			Violations: []taskertype.ContextViolation{{Path: je.Pointer, Message: je.Msg}}}
	}
	for i, tag := range req.Tags {
		if err := checkText(fmt.Sprintf("tags[%d]", i), tag); err != nil {
			return err
		}
	}
	for name, raw := range req.StepInputs {
		if err := checkJSONText(raw); err != nil {
			return &taskertype.RequestError{Field: "step_inputs", Step: name, Msg: err.Error()}
		}
	}
	return nil
}

// checkActor applies checkText to an operator's name and reason.
func checkActor(a Actor) error {
	if err := checkText("actor", a.Who); err != nil {
		return err
	}
	return checkText("reason", a.Reason)
}

// checkJSONText reports a JSON document that is malformed or holds what a
// database cannot store (see internal/jsonvalid).
func checkJSONText(raw []byte) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	return jsonvalid.Check(raw)
}

// storableText makes text from a handler (an error message, a class, a
// backtrace line) storable on every database: invalid UTF-8 and NUL, which
// PostgreSQL refuses in text and jsonb, become U+FFFD. A failure is
// recorded whatever its message holds; refusing it would leave the attempt
// unrecordable.
func storableText(s string) string {
	if utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// storableResults checks a handler's encoded results, which must be valid
// JSON already: a document a database cannot store (NUL or a lone
// surrogate in a string, a number beyond the limits, duplicate keys) fails
// the attempt for good with the reason, instead of failing every try to
// record it. One pass over the document, on every attempt's result.
func storableResults(raw []byte) error {
	if err := jsonvalid.CheckWellFormed(raw); err != nil {
		return taskertype.Permanent(fmt.Errorf("handler results cannot be stored: %w", err))
	}
	return nil
}
