package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tasker-systems/tasker/internal/jsonvalid"
)

// decodeBody decodes a JSON object body into dst, refusing unknown fields
// and trailing data. An empty body is an error only when required.
func decodeBody(r *http.Request, dst any, required bool) error {
	raw, err := readBody(r)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		if required {
			return badRequest("request body is required (a JSON object)", nil)
		}
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if err := dec.Decode(&json.RawMessage{}); !errors.Is(err, io.EOF) {
		return badRequest("malformed JSON: unexpected data after the request object", nil)
	}
	return checkDocument(raw, dst)
}

// readBody reads the whole request body. The server's read timeout bounds
// it (a client that dribbles or withholds its body is cut off); once the
// body is read, net/http lifts the read deadline for the handler.
func readBody(r *http.Request) ([]byte, error) {
	var raw []byte
	if r.Body != nil {
		var err error
		if raw, err = io.ReadAll(r.Body); err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, err
			}
			return nil, badRequest("cannot read request body: "+err.Error(), nil)
		}
	}
	return raw, nil
}

// unboundedWrite lifts the write deadline for a long-lived endpoint
// (handle, events_poll, migrate): it answers when its work is done or the
// client goes away, which the server's write timeout must not cut short.
func unboundedWrite(w http.ResponseWriter) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
}

// checkDocument refuses, in a syntactically valid request document, what
// the decoder let through: text and numbers a database cannot store alike
// (invalid UTF-8, which the decoder silently replaces, NUL, lone surrogate
// escapes, numbers beyond the documented limits, nesting), duplicate keys
// (the decoder keeps the last) and keys that match a field only when case
// is ignored (the decoder matches "NameSpace" to namespace). Every string
// and number of the whole document is checked, free-form parts (context,
// step inputs, results) included, with the raw bytes.
func checkDocument(raw []byte, dst any) error {
	var je *jsonvalid.Error
	if err := jsonvalid.Check(raw); errors.As(err, &je) {
		return docError(je)
	} else if err != nil {
		return badRequest("malformed JSON: "+err.Error(), nil)
	}
	if err := jsonvalid.CheckKeys(raw, dst); errors.As(err, &je) {
		if f := je.Field(); "/"+f == je.Pointer {
			return badRequest(fmt.Sprintf("unknown field %q (field names are case-sensitive)", f), map[string]any{"field": f})
		}
		return docError(je)
	} else if err != nil {
		return badRequest("malformed JSON: "+err.Error(), nil)
	}
	return nil
}

// docError answers a jsonvalid problem: 400 invalid_request naming the
// top-level field and the JSON pointer of the value.
func docError(je *jsonvalid.Error) *apiError {
	d := map[string]any{}
	if f := je.Field(); f != "" {
		d["field"] = f
		d["path"] = je.Pointer
	} else {
		d["offset"] = je.Offset
	}
	return badRequest(je.Error(), d)
}

// errNUL refuses U+0000 in query parameters: PostgreSQL cannot store it in
// text or jsonb (SQLite can), so it is refused on every database alike.
var errNUL = badRequest("strings cannot contain the NUL character (U+0000)", nil)

// jsonError turns an encoding/json error into an invalid_request answer.
func jsonError(err error) *apiError {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return badRequest(fmt.Sprintf("malformed JSON at byte offset %d: %s", se.Offset, se.Error()),
			map[string]any{"offset": se.Offset})
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("malformed JSON: unexpected end of input", nil)
	case errors.As(err, &te):
		if te.Field == "" {
			return badRequest("request body must be a JSON object, got JSON "+te.Value, nil)
		}
		return badRequest(fmt.Sprintf("field %q: expected %s, got JSON %s", te.Field, jsonKind(te.Type.String()), te.Value),
			map[string]any{"field": te.Field})
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if f, uerr := strconv.Unquote(name); uerr == nil {
			name = f
		}
		return badRequest(fmt.Sprintf("unknown field %q", name), map[string]any{"field": name})
	}
	return badRequest("malformed JSON: "+err.Error(), nil)
}

// jsonKind renders a Go type as the JSON kind a client should send.
func jsonKind(goType string) string {
	switch {
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "a boolean"
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"), strings.HasPrefix(goType, "float"):
		return "a number"
	case strings.HasPrefix(goType, "[]"):
		return "an array"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "struct"):
		return "an object"
	}
	return goType
}

// query reads URL query parameters, refusing unknown and repeated ones
// (except those listed as repeatable).
type query struct {
	v   url.Values
	err *apiError
}

func parseQuery(r *http.Request, known []string, repeatable ...string) (*query, *apiError) {
	v, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest("malformed query string: "+err.Error(), nil)
	}
	for k, vals := range v {
		if !slices.Contains(known, k) {
			return nil, badRequest(fmt.Sprintf("unknown query parameter %q (known: %s)", k, strings.Join(known, ", ")),
				map[string]any{"parameter": k})
		}
		if len(vals) > 1 && !slices.Contains(repeatable, k) {
			return nil, badRequest(fmt.Sprintf("query parameter %q given %d times", k, len(vals)),
				map[string]any{"parameter": k})
		}
		for _, val := range vals {
			if strings.ContainsRune(val, 0) {
				return nil, errNUL
			}
			if !utf8.ValidString(val) {
				return nil, badRequest(fmt.Sprintf("query parameter %q is not valid UTF-8", k), map[string]any{"parameter": k})
			}
		}
	}
	return &query{v: v}, nil
}

func (q *query) get(k string) string { return q.v.Get(k) }

// invalid records the first bad parameter.
func (q *query) invalid(k, msg string) {
	if q.err == nil {
		q.err = badRequest(fmt.Sprintf("query parameter %q: %s", k, msg), map[string]any{"parameter": k})
	}
}
