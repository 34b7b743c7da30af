package template

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"

	"github.com/tasker-systems/tasker/taskertype"
)

// FuzzValidateContext feeds arbitrary documents to ValidateContext, with
// and without a schema. It must not panic, must fail only with a
// *ContextValidationError, and an accepted context must be storable on both
// databases: a JSON object of at most MaxContextBytes, valid UTF-8, with no
// NUL in any string or key.
func FuzzValidateContext(f *testing.F) {
	f.Add([]byte(`{"order_id": 1, "email": "a@b"}`))
	f.Add([]byte(`{"note": "a\u0000b"}`))
	f.Add([]byte(`{"\u0000": 1}`))
	f.Add([]byte("{\"x\": \"caf\xe9\"}"))
	f.Add([]byte(`{"a": ["\u0001", {"b": "\ud800"}]}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(``))
	plain := &Template{Namespace: "f", Name: "plain", Version: "1.0.0"}
	strict := &Template{Namespace: "f", Name: "strict", Version: "1.0.0",
		Schema: json.RawMessage(`{"type": "object", "required": ["order_id"], "properties": {"order_id": {"type": "integer"}}}`)}
	f.Fuzz(func(t *testing.T, doc []byte) {
		for _, tm := range []*Template{plain, strict} {
			err := tm.ValidateContext(doc)
			if err != nil {
				var cv *taskertype.ContextValidationError
				if !errors.As(err, &cv) || !errors.Is(err, taskertype.ErrInvalidContext) || len(cv.Violations) == 0 {
					t.Fatalf("%s: unexpected error %T: %v", tm.Name, err, err)
				}
				continue
			}
			if len(doc) > MaxContextBytes || !utf8.Valid(doc) {
				t.Fatalf("%s: accepted an oversized or non-UTF-8 context", tm.Name)
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			var v map[string]any
			if err := json.Unmarshal(doc, &v); err != nil {
				t.Fatalf("%s: accepted a context that is not a JSON object: %v", tm.Name, err)
			}
			if _, found := findNUL(v, ""); found {
				t.Fatalf("%s: accepted a context with NUL", tm.Name)
			}
		}
	})
}
