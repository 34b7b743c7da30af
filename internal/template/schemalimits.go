package template

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaLimitError is a context schema refused by a limit: too big, nested
// too deep, a $ref cycle, or too many subschemas applied to one value. ptr
// is the JSON pointer of the offending place in the schema ("" for the
// whole schema).
type schemaLimitError struct {
	ptr string
	msg string
}

// Error implements error.
func (e *schemaLimitError) Error() string {
	if e.ptr == "" {
		return "invalid JSON Schema: " + e.msg
	}
	return fmt.Sprintf("invalid JSON Schema at %s: %s", quote(e.ptr), e.msg)
}

// checkSchemaDepth refuses a schema (JSON text) whose objects and arrays
// nest deeper than MaxNestingDepth, reading tokens without building the
// document. Syntax errors are left to the compiler.
func checkSchemaDepth(raw []byte) error {
	type frame struct {
		array   bool
		wantKey bool
		idx     int
		key     string
	}
	var stack []frame
	path := func() string {
		var b strings.Builder
		for _, f := range stack {
			b.WriteByte('/')
			if f.array {
				b.WriteString(strconv.Itoa(f.idx))
			} else {
				b.WriteString(escapePointer(f.key))
			}
		}
		return b.String()
	}
	afterValue := func() {
		if n := len(stack); n > 0 {
			if stack[n-1].array {
				stack[n-1].idx++
			} else {
				stack[n-1].wantKey = true
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil { // io.EOF, or a syntax error the compiler reports
			return nil
		}
		n := len(stack)
		if s, ok := tok.(string); ok && n > 0 && !stack[n-1].array && stack[n-1].wantKey {
			stack[n-1].key, stack[n-1].wantKey = s, false
			continue
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			if n >= MaxNestingDepth {
				return &schemaLimitError{ptr: path(), msg: fmt.Sprintf("nested more than %d levels deep (the limit for a schema)", MaxNestingDepth)}
			}
			stack = append(stack, frame{array: tok == json.Delim('['), wantKey: tok == json.Delim('{')})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:n-1]
			afterValue()
		default:
			afterValue()
		}
	}
}

// schemaPointer renders a compiled schema's location as a JSON pointer into
// the context schema, or the full location for a schema elsewhere (a
// metaschema).
func schemaPointer(s *jsonschema.Schema) string {
	if rest, ok := strings.CutPrefix(s.Location, schemaURL+"#"); ok {
		if rest == "" {
			return "/"
		}
		return rest
	}
	return s.Location
}

// schemaGraph is the compiled schema seen as a graph.
type schemaGraph struct {
	dynamic   map[string][]*jsonschema.Schema // $dynamicAnchor name -> schemas
	recursive []*jsonschema.Schema            // schemas with $recursiveAnchor
}

// subschemas lists every subschema s refers to; inPlace tells, for each,
// whether it applies to the same value as s (true) or to a part of it.
func (g *schemaGraph) subschemas(s *jsonschema.Schema, fn func(sub *jsonschema.Schema, inPlace bool)) {
	one := func(sub *jsonschema.Schema, inPlace bool) {
		if sub != nil {
			fn(sub, inPlace)
		}
	}
	many := func(subs []*jsonschema.Schema, inPlace bool) {
		for _, sub := range subs {
			one(sub, inPlace)
		}
	}
	anySchema := func(v any, inPlace bool) {
		switch x := v.(type) {
		case *jsonschema.Schema:
			one(x, inPlace)
		case []*jsonschema.Schema:
			many(x, inPlace)
		}
	}
	// Applied to the same value.
	one(s.Ref, true)
	one(s.RecursiveRef, true)
	if s.RecursiveRef != nil {
		many(g.recursive, true)
	}
	if s.DynamicRef != nil {
		one(s.DynamicRef.Ref, true)
		if s.DynamicRef.Anchor != "" {
			many(g.dynamic[s.DynamicRef.Anchor], true)
		}
	}
	one(s.Not, true)
	many(s.AllOf, true)
	many(s.AnyOf, true)
	many(s.OneOf, true)
	one(s.If, true)
	one(s.Then, true)
	one(s.Else, true)
	for _, sub := range s.DependentSchemas {
		one(sub, true)
	}
	for _, v := range s.Dependencies {
		anySchema(v, true)
	}
	// Applied to parts of the value (or to decoded content).
	one(s.PropertyNames, false)
	for _, sub := range s.Properties {
		one(sub, false)
	}
	for _, sub := range s.PatternProperties {
		one(sub, false)
	}
	anySchema(s.AdditionalProperties, false)
	one(s.UnevaluatedProperties, false)
	one(s.Contains, false)
	anySchema(s.Items, false)
	anySchema(s.AdditionalItems, false)
	many(s.PrefixItems, false)
	one(s.Items2020, false)
	one(s.UnevaluatedItems, false)
	one(s.ContentSchema, false)
}

// checkSchemaGraph refuses a compiled schema that has a $ref cycle staying
// on the same value (validation would apply it forever: the validator gives
// up on every task with a "ref cycle" error) or that applies more than
// MaxSchemaApplications subschemas to one value. The test is conservative
// for $dynamicRef and $recursiveRef: every schema with the matching anchor
// counts as a target.
func checkSchemaGraph(root *jsonschema.Schema) error {
	g := &schemaGraph{dynamic: map[string][]*jsonschema.Schema{}}
	// Every reachable schema, first: the anchors decide dynamic targets.
	seen := map[*jsonschema.Schema]bool{root: true}
	all := []*jsonschema.Schema{root}
	for i := 0; i < len(all); i++ {
		s := all[i]
		if s.DynamicAnchor != "" {
			g.dynamic[s.DynamicAnchor] = append(g.dynamic[s.DynamicAnchor], s)
		}
		if s.RecursiveAnchor {
			g.recursive = append(g.recursive, s)
		}
		g.subschemas(s, func(sub *jsonschema.Schema, _ bool) {
			if !seen[sub] {
				seen[sub] = true
				all = append(all, sub)
			}
		})
	}

	const (
		white = iota
		grey
		black
	)
	color := make(map[*jsonschema.Schema]int, len(all))
	cost := make(map[*jsonschema.Schema]int, len(all))
	var stack []*jsonschema.Schema
	var visit func(s *jsonschema.Schema) error
	visit = func(s *jsonschema.Schema) error {
		color[s] = grey
		stack = append(stack, s)
		total := 1
		var err error
		g.subschemas(s, func(sub *jsonschema.Schema, inPlace bool) {
			if err != nil || !inPlace {
				return
			}
			switch color[sub] {
			case grey:
				start := len(stack) - 1
				for stack[start] != sub {
					start--
				}
				names := make([]string, 0, len(stack)-start+1)
				for _, c := range stack[start:] {
					names = append(names, schemaPointer(c))
				}
				names = append(names, schemaPointer(sub))
				err = &schemaLimitError{ptr: ptrOrEmpty(sub), msg: fmt.Sprintf(
					"$ref cycle %s: the schema would apply itself to the same value forever", clipList(names))}
				return
			case white:
				if err = visit(sub); err != nil {
					return
				}
			}
			total = min(total+cost[sub], MaxSchemaApplications+1)
		})
		if err != nil {
			return err
		}
		if total > MaxSchemaApplications {
			return &schemaLimitError{ptr: ptrOrEmpty(s), msg: fmt.Sprintf(
				"applies more than %d subschemas to one value (through $ref, allOf, anyOf, oneOf, not, if/then/else); the limit is %d",
				MaxSchemaApplications, MaxSchemaApplications)}
		}
		cost[s] = total
		color[s] = black
		stack = stack[:len(stack)-1]
		return nil
	}
	for _, s := range all {
		if color[s] == white {
			if err := visit(s); err != nil {
				return err
			}
		}
	}
	return nil
}

// ptrOrEmpty is the JSON pointer of s in the context schema, or "" when s
// lies outside it (or is its root).
func ptrOrEmpty(s *jsonschema.Schema) string {
	p := schemaPointer(s)
	if !strings.HasPrefix(p, "/") || p == "/" {
		return ""
	}
	return p
}

// clipList joins schema locations for a message, keeping at most ten.
func clipList(names []string) string {
	if len(names) > 10 {
		names = append(append(names[:5:5], fmt.Sprintf("... (%d more)", len(names)-10)), names[len(names)-5:]...)
	}
	for i, n := range names {
		names[i] = clip(n)
	}
	return strings.Join(names, " -> ")
}
