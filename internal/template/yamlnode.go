package template

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Limits of the YAML walker.
const (
	// maxMergeDepth bounds nested merge keys (<<: *a where a merges b ...).
	maxMergeDepth = 16
	// maxMergeVisits bounds the mappings visited through merge keys in one
	// file, so a fan-out of aliases cannot make the walk exponential.
	maxMergeVisits = 10000
	// maxQuoted bounds how much of a user value is echoed in a message.
	maxQuoted = 64
)

// resolve follows an alias to the node it names.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < 8; i++ {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is an explicit or implicit YAML null.
func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// describe names the YAML type of n for "expected X, got Y" messages,
// quoting short scalar values.
func describe(n *yaml.Node) string {
	n = resolve(n)
	if n == nil {
		return "nothing"
	}
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.DocumentNode:
		return "a document"
	case yaml.AliasNode:
		return "an alias"
	}
	switch n.ShortTag() {
	case "!!str":
		return "string " + quote(n.Value)
	case "!!int":
		return "integer " + clip(n.Value)
	case "!!float":
		return "float " + clip(n.Value)
	case "!!bool":
		return "boolean " + clip(n.Value)
	case "!!null":
		return "null"
	case "!!timestamp":
		return "timestamp " + clip(n.Value)
	case "!!binary":
		return "binary data"
	default:
		return "value tagged " + clip(n.Tag)
	}
}

// clip shortens s for an error message.
func clip(s string) string {
	if len(s) <= maxQuoted {
		return s
	}
	cut := maxQuoted
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// quote quotes s (shortened) for an error message.
func quote(s string) string { return fmt.Sprintf("%q", clip(s)) }

// safeDecode runs yaml's Node.Decode, turning a panic of the YAML library
// into an error so that no input can crash a load.
func safeDecode(n *yaml.Node, out any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("YAML decoder failed: %v", r)
		}
	}()
	return n.Decode(out)
}

// where renders a JSON pointer for a message.
func where(path string) string {
	if path == "" {
		return "at the top level"
	}
	return "at " + quote(path)
}

// escapePointer escapes one JSON pointer token (RFC 6901).
func escapePointer(tok string) string {
	return strings.ReplaceAll(strings.ReplaceAll(tok, "~", "~0"), "/", "~1")
}

// unescapePointer reverses escapePointer.
func unescapePointer(tok string) string {
	return strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
}

// lineAt returns the line of the node a JSON pointer (as tokens) designates
// inside a YAML value, or of the deepest node reached.
func lineAt(n *yaml.Node, tokens []string) int {
	n = resolve(n)
	if n == nil {
		return 0
	}
	line := n.Line
	for _, tok := range tokens {
		var next *yaml.Node
		switch n.Kind {
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if k := resolve(n.Content[i]); k != nil && k.Value == tok {
					next, line = n.Content[i+1], n.Content[i].Line
					break
				}
			}
		case yaml.SequenceNode:
			if idx, err := strconv.Atoi(tok); err == nil && idx >= 0 && idx < len(n.Content) {
				next = n.Content[idx]
				line = next.Line
			}
		}
		if next = resolve(next); next == nil {
			return line
		}
		n = next
	}
	return line
}

// cloneJSON deep-copies a value made of maps, slices and scalars.
func cloneJSON(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = cloneJSON(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = cloneJSON(e)
		}
		return out
	default:
		return x
	}
}

// deepMerge returns base with over merged in: maps present on both sides
// are merged recursively, anything else in over replaces the base value.
// Neither input is modified.
func deepMerge(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = cloneJSON(v)
	}
	for k, v := range over {
		if bm, ok := out[k].(map[string]any); ok {
			if om, ok := v.(map[string]any); ok {
				out[k] = deepMerge(bm, om)
				continue
			}
		}
		out[k] = cloneJSON(v)
	}
	return out
}

// toJSON encodes a normalized value.
func toJSON(v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return b, nil
}
