package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/tasker-systems/tasker/taskertype"
)

// checkText refuses text a database cannot store portably: invalid UTF-8,
// and NUL, which PostgreSQL rejects in text and jsonb (SQLite would store
// it, so both refuse it). Checking here turns what would be a database
// error into a typed invalid-request error, before anything is written.
func checkText(field, v string) error {
	if !utf8.ValidString(v) {
		return &taskertype.RequestError{Field: field, Msg: "is not valid UTF-8"}
	}
	if strings.IndexByte(v, 0) >= 0 {
		return &taskertype.RequestError{Field: field, Msg: "must not contain NUL (\\u0000)"}
	}
	return nil
}

// checkRequestText applies checkText to every free-text field of a request
// and checks step inputs the way ValidateContext checks the context.
func checkRequestText(req *TaskRequest) error {
	for _, f := range []struct{ name, v string }{
		{"initiator", req.Initiator}, {"source_system", req.SourceSystem}, {"reason", req.Reason},
		{"idempotency_key", req.IdempotencyKey},
	} {
		if err := checkText(f.name, f.v); err != nil {
			return err
		}
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

// checkJSONText reports a JSON document that is malformed, not UTF-8, or
// holds a NUL in any string or key.
func checkJSONText(raw []byte) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	if !utf8.Valid(raw) {
		return fmt.Errorf("is not valid UTF-8")
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("invalid JSON: %w", err)
	}
	if hasNUL(v) {
		return fmt.Errorf("must not contain NUL (\\u0000)")
	}
	return nil
}

func hasNUL(v any) bool {
	switch x := v.(type) {
	case string:
		return strings.IndexByte(x, 0) >= 0
	case []any:
		for _, e := range x {
			if hasNUL(e) {
				return true
			}
		}
	case map[string]any:
		for k, e := range x {
			if strings.IndexByte(k, 0) >= 0 || hasNUL(e) {
				return true
			}
		}
	}
	return false
}
