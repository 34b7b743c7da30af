package template

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"github.com/tasker-systems/tasker/taskertype"
	"go.yaml.in/yaml/v3"
)

// MaxContextBytes is the largest task context ValidateContext accepts, in
// bytes of JSON (1 MiB). A bigger context is rejected before it is parsed.
const MaxContextBytes = 1 << 20

// schemaURL is the in-memory location the context schema is compiled at.
const schemaURL = "tasker:///context-schema.json"

// noLoader refuses every external $ref: a template's schema must be self
// contained, and loading files or URLs while reading templates would make a
// load depend on the network or leak local files into error messages.
type noLoader struct{}

// Load implements jsonschema.URLLoader.
func (noLoader) Load(string) (any, error) {
	return nil, errors.New("external schema references are not allowed: a template's schema must be self-contained")
}

// compileSchema compiles a context schema (JSON text). The limits are
// checked first (size, then nesting depth, before the compiler sees the
// schema) and after compiling ($ref cycles, applications per value); a
// limit is reported as a *schemaLimitError.
func compileSchema(raw []byte) (*jsonschema.Schema, error) {
	if len(raw) > MaxExpandedBytes {
		return nil, &schemaLimitError{msg: fmt.Sprintf("schema is %d bytes of JSON, more than the limit of %d", len(raw), MaxExpandedBytes)}
	}
	if err := checkSchemaDepth(raw); err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(noLoader{})
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, err
	}
	sch, err := c.Compile(schemaURL)
	if err != nil {
		return nil, err
	}
	if err := checkSchemaGraph(sch); err != nil {
		return nil, err
	}
	return sch, nil
}

// schemaProblem is one reason a schema does not compile.
type schemaProblem struct {
	line int
	msg  string
}

// schemaProblems explains a compile error; when the schema breaks the
// metaschema, one problem per failing keyword, with its YAML line (node is
// the schema's YAML, nil when built in memory).
func schemaProblems(err error, node *yaml.Node) []schemaProblem {
	line := 0
	if node != nil {
		line = node.Line
	}
	var le *schemaLimitError
	if errors.As(err, &le) {
		at := line
		if node != nil && le.ptr != "" {
			at = lineAt(node, splitPointer(le.ptr))
		}
		return []schemaProblem{{line: at, msg: le.Error()}}
	}
	var sve *jsonschema.SchemaValidationError
	var ve *jsonschema.ValidationError
	if errors.As(err, &sve) && errors.As(sve.Err, &ve) {
		var out []schemaProblem
		for _, v := range leaves(ve) {
			at := line
			if node != nil {
				at = lineAt(node, splitPointer(v.Path))
			}
			p := v.Path
			if p == "" {
				p = "/"
			}
			out = append(out, schemaProblem{line: at, msg: fmt.Sprintf("invalid JSON Schema at %s: %s", quote(p), v.Message)})
		}
		if len(out) > 0 {
			return out
		}
	}
	msg := strings.ReplaceAll(err.Error(), schemaURL, "schema")
	return []schemaProblem{{line: line, msg: "invalid JSON Schema: " + msg}}
}

// splitPointer splits a JSON pointer into unescaped tokens.
func splitPointer(p string) []string {
	if p == "" {
		return nil
	}
	toks := strings.Split(strings.TrimPrefix(p, "/"), "/")
	for i, t := range toks {
		toks[i] = unescapePointer(t)
	}
	return toks
}

// leaves flattens a validation error tree into its leaf problems, one per
// failing path and message, sorted by path. A failed "required" becomes one
// problem per missing property, at the property's path.
func leaves(root *jsonschema.ValidationError) []taskertype.ContextViolation {
	var out []taskertype.ContextViolation
	seen := map[taskertype.ContextViolation]bool{}
	add := func(path, msg string) {
		v := taskertype.ContextViolation{Path: path, Message: msg}
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		path := pointer(e.InstanceLocation)
		if req, ok := e.ErrorKind.(*kind.Required); ok {
			for _, m := range req.Missing {
				add(path+"/"+escapePointer(m), fmt.Sprintf("missing required property %q", m))
			}
			return
		}
		add(path, kindMessage(e.ErrorKind))
	}
	walk(root)
	slices.SortStableFunc(out, func(a, b taskertype.ContextViolation) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return strings.Compare(a.Message, b.Message)
	})
	return out
}

// pointer joins instance location tokens into a JSON pointer.
func pointer(tokens []string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(escapePointer(t))
	}
	return b.String()
}

// kindMessage renders one error kind in English. The library renders a
// lone error as "at '<location>': <message>"; with no location that prefix
// is fixed and is cut.
func kindMessage(k jsonschema.ErrorKind) string {
	s := (&jsonschema.ValidationError{ErrorKind: k}).Error()
	if rest, ok := strings.CutPrefix(s, "at '': "); ok {
		return rest
	}
	return s
}

// ValidateContext checks a task context (a JSON document) against the
// template's schema. An empty or nil ctx means {}. The context must be a
// JSON object of at most MaxContextBytes bytes; a template without a schema
// accepts any object. It returns nil or a
// *taskertype.ContextValidationError listing every failing path.
func (t *Template) ValidateContext(ctx []byte) error {
	fail := func(v ...taskertype.ContextViolation) error {
		return &taskertype.ContextValidationError{Template: t.Key(), Violations: v}
	}
	if len(ctx) > MaxContextBytes {
		return fail(taskertype.ContextViolation{
			Message: fmt.Sprintf("context is %d bytes, more than the limit of %d bytes", len(ctx), MaxContextBytes),
		})
	}
	if len(bytes.TrimSpace(ctx)) == 0 {
		ctx = []byte("{}")
	}
	if !utf8.Valid(ctx) {
		return fail(taskertype.ContextViolation{Message: "context is not valid UTF-8"})
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(ctx))
	if err != nil {
		return fail(taskertype.ContextViolation{Message: "invalid JSON: " + err.Error()})
	}
	if _, ok := doc.(map[string]any); !ok {
		return fail(taskertype.ContextViolation{Message: "task context must be a JSON object, got " + JSONKind(doc)})
	}
	if path, found := findNUL(doc, ""); found {
		// PostgreSQL cannot store NUL in jsonb; refused on every database.
		return fail(taskertype.ContextViolation{Path: path, Message: "must not contain NUL (\\u0000)"})
	}
	sch := t.schema
	if sch == nil && len(t.Schema) > 0 { // built in memory and never added
		if sch, err = compileSchema(t.Schema); err != nil {
			return fail(taskertype.ContextViolation{Message: "template schema does not compile: " + err.Error()})
		}
	}
	if sch == nil {
		return nil
	}
	err = sch.Validate(doc)
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if errors.As(err, &ve) {
		if v := leaves(ve); len(v) > 0 {
			return fail(v...)
		}
	}
	return fail(taskertype.ContextViolation{Message: err.Error()})
}

// findNUL returns the JSON pointer of the first string or key holding NUL.
func findNUL(v any, path string) (string, bool) {
	switch x := v.(type) {
	case string:
		return path, strings.IndexByte(x, 0) >= 0
	case []any:
		for i, e := range x {
			if p, ok := findNUL(e, fmt.Sprintf("%s/%d", path, i)); ok {
				return p, true
			}
		}
	case map[string]any:
		for k, e := range x {
			p := path + "/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(k)
			if strings.IndexByte(k, 0) >= 0 {
				return p, true
			}
			if p, ok := findNUL(e, p); ok {
				return p, true
			}
		}
	}
	return "", false
}

// JSONKind names the JSON type of a decoded value ("an object", "an
// array", "a string", "a number", "a boolean" or "null"), for messages.
func JSONKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	default:
		return "a number"
	}
}
