package builtin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/tasker-systems/tasker/taskertype"
)

// expander resolves "${...}" references against one step attempt. JSON
// documents are decoded lazily, once, with numbers kept as json.Number so
// that large integers survive unchanged.
type expander struct {
	handler string
	step    *taskertype.StepContext

	context, inputs lazyDoc
	deps            map[string]any
}

// lazyDoc is a JSON document decoded on first use.
type lazyDoc struct {
	done bool
	val  any
	err  error
}

func (l *lazyDoc) get(raw []byte) (any, error) {
	if !l.done {
		l.val, l.err = decodeJSON(raw)
		l.done = true
	}
	return l.val, l.err
}

func newExpander(handler string, step *taskertype.StepContext) *expander {
	return &expander{handler: handler, step: step, deps: map[string]any{}}
}

// errRef is a permanent error about an unresolvable reference found at where
// (a handler_config path such as "handler_config.body.items[1]").
func (x *expander) errRef(where, ref, format string, args ...any) error {
	return taskertype.Permanent(fmt.Errorf("%s: step %q: %s: cannot resolve reference %s: %s",
		x.handler, x.step.StepName, where, ref, fmt.Sprintf(format, args...)))
}

// expand returns v with every reference expanded, recursing into maps and
// lists. where names v's location for error messages.
func (x *expander) expand(v any, where string) (any, error) {
	switch t := v.(type) {
	case string:
		return x.expandString(t, where)
	case nil, bool, json.Number, json.RawMessage:
		return v, nil
	}
	if _, ok := toFloat(v); ok {
		return v, nil
	}
	if m, ok := asMap(v); ok {
		out := make(map[string]any, len(m))
		for k, e := range m {
			ev, err := x.expand(e, where+"."+k)
			if err != nil {
				return nil, err
			}
			out[k] = ev
		}
		return out, nil
	}
	if l, ok := asList(v); ok {
		out := make([]any, len(l))
		for i, e := range l {
			ev, err := x.expand(e, fmt.Sprintf("%s[%d]", where, i))
			if err != nil {
				return nil, err
			}
			out[i] = ev
		}
		return out, nil
	}
	return v, nil
}

// expandText expands v and renders the result as text.
func (x *expander) expandText(v any, where string) (string, error) {
	ev, err := x.expand(v, where)
	if err != nil {
		return "", err
	}
	return textOf(ev), nil
}

// expandString expands the references in s. A string that is exactly one
// reference becomes the referenced value; otherwise the result is a string.
func (x *expander) expandString(s, where string) (any, error) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	if strings.HasPrefix(s, "${") && strings.IndexByte(s, '}') == len(s)-1 {
		return x.resolve(s, s[2:len(s)-1], where)
	}
	return x.interpolate(s, where, func(b *strings.Builder, _, _ string, val any) error {
		b.WriteString(textOf(val))
		return nil
	})
}

// interpolate writes s with each "${REF}" replaced by what insert writes for
// its value ("$${" is a literal "${"); insert is given the text written so
// far, the reference as written and its trimmed body.
func (x *expander) interpolate(s, where string, insert func(b *strings.Builder, ref, body string, val any) error) (string, error) {
	var b strings.Builder
	rest := s
	for {
		i := strings.Index(rest, "${")
		if i < 0 {
			b.WriteString(rest)
			return b.String(), nil
		}
		if i > 0 && rest[i-1] == '$' { // "$${" is a literal "${"
			b.WriteString(rest[:i-1])
			b.WriteString("${")
			rest = rest[i+2:]
			continue
		}
		b.WriteString(rest[:i])
		end := strings.IndexByte(rest[i:], '}')
		if end < 0 {
			return "", x.errRef(where, strconv.Quote(rest[i:]), "missing closing \"}\"")
		}
		ref := rest[i : i+end+1]
		body := strings.TrimSpace(ref[2 : len(ref)-1])
		val, err := x.resolve(ref, body, where)
		if err != nil {
			return "", err
		}
		if err := insert(&b, ref, body, val); err != nil {
			return "", err
		}
		rest = rest[i+end+1:]
	}
}

// rawPrefix marks a reference to be inserted into a URL unescaped, as in
// "${raw:context.base_url}". Elsewhere it changes nothing.
const rawPrefix = "raw:"

// resolve looks up one reference body such as "context.a.0.b".
func (x *expander) resolve(ref, body, where string) (any, error) {
	body = strings.TrimPrefix(strings.TrimSpace(body), rawPrefix)
	body = strings.TrimSpace(body)
	if body == "" {
		return nil, x.errRef(where, ref, "empty reference")
	}
	segs := strings.Split(body, ".")
	for _, s := range segs {
		if s == "" {
			return nil, x.errRef(where, ref, "empty path segment")
		}
	}
	root, path := segs[0], segs[1:]
	var doc any
	switch root {
	case "context":
		d, err := x.context.get(x.step.Context)
		if err != nil {
			return nil, x.errRef(where, ref, "the task context is not valid JSON: %v", err)
		}
		doc = d
	case "inputs":
		d, err := x.inputs.get(x.step.Inputs)
		if err != nil {
			return nil, x.errRef(where, ref, "the step inputs are not valid JSON: %v", err)
		}
		doc = d
	case "steps":
		if len(path) == 0 {
			return nil, x.errRef(where, ref, "name a parent step: ${steps.NAME...}")
		}
		name := path[0]
		path = path[1:]
		d, ok := x.deps[name]
		if !ok {
			raw, found := x.step.DependencyResults[name]
			if !found {
				return nil, x.errRef(where, ref, "step %q is not a parent of this step (parents with results: %s)",
					name, x.parentNames())
			}
			var err error
			d, err = decodeJSON(raw)
			if err != nil {
				return nil, x.errRef(where, ref, "the results of step %q are not valid JSON: %v", name, err)
			}
			x.deps[name] = d
		}
		doc = d
	case "step", "task":
		if len(path) != 1 {
			return nil, x.errRef(where, ref, "use ${%s.FIELD} with one field", root)
		}
		v, ok := x.metadata(root, path[0])
		if !ok {
			return nil, x.errRef(where, ref, "unknown field %q of %s", path[0], root)
		}
		return v, nil
	default:
		return nil, x.errRef(where, ref,
			"unknown root %q (use context, steps, inputs, step or task; write $${ for a literal ${)", root)
	}
	for i, seg := range path {
		next, err := index(doc, seg)
		if err != nil {
			return nil, x.errRef(where, ref, "at %q: %v", strings.Join(segs[:len(segs)-len(path)+i+1], "."), err)
		}
		doc = next
	}
	return doc, nil
}

// expandURL expands the references in a URL template, escaping each value
// for the part of the URL it lands in, judged from the text before it:
//
//   - in the path: as one path segment (url.PathEscape: "/", "?", "#" and
//     "%" are escaped, so "../../admin" stays inside its segment); a value
//     that is exactly "." or ".." is refused, as it would be a dot segment;
//   - in the query string: as a query key or value (url.QueryEscape: "&",
//     "=", "#" and "+" are escaped);
//   - in the fragment: as a path segment;
//   - in the scheme or host (before the path): unescaped, but only letters,
//     digits, ".", "-", "_" and "~" are accepted.
//
// "${raw:REF}" inserts the value unescaped, wherever it lands (for instance
// a base URL taken from the context); the part that follows is then judged
// from the text with the value in it.
func (x *expander) expandURL(s, where string) (string, error) {
	return x.interpolate(s, where, func(b *strings.Builder, ref, body string, val any) error {
		text := textOf(val)
		if strings.HasPrefix(body, rawPrefix) {
			b.WriteString(text)
			return nil
		}
		esc, err := escapeForURL(urlPartAt(b.String()), text)
		if err != nil {
			return taskertype.Permanent(fmt.Errorf("%s: step %q: %s: the value of %s (%s) %v",
				x.handler, x.step.StepName, where, ref, describe(text), err))
		}
		b.WriteString(esc)
		return nil
	})
}

// urlPart is a part of a URL.
type urlPart int

const (
	urlAuthority urlPart = iota // scheme, userinfo, host and port
	urlPath
	urlQuery
	urlFragment
)

// urlPartAt tells which part of a URL text that starts with prefix
// continues in.
func urlPartAt(prefix string) urlPart {
	switch {
	case strings.Contains(prefix, "#"):
		return urlFragment
	case strings.Contains(prefix, "?"):
		return urlQuery
	}
	i := strings.Index(prefix, "://")
	if i >= 0 && strings.Contains(prefix[i+3:], "/") {
		return urlPath
	}
	return urlAuthority
}

// escapeForURL escapes text for part; the error completes "the value of
// REF (VALUE) ...".
func escapeForURL(part urlPart, text string) (string, error) {
	switch part {
	case urlPath:
		if text == "." || text == ".." {
			return "", errors.New(`would be a "." or ".." path segment; refused`)
		}
		return url.PathEscape(text), nil
	case urlQuery:
		return url.QueryEscape(text), nil
	case urlFragment:
		return url.PathEscape(text), nil
	}
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte(".-_~", c) >= 0 {
			continue
		}
		return "", fmt.Errorf("cannot go into the scheme or host of the URL: only letters, digits and .-_~ may; "+
			"write ${%sREF} to insert a value (such as a base URL) unescaped", rawPrefix)
	}
	return text, nil
}

// metadata returns the value of ${step.FIELD} or ${task.FIELD}.
func (x *expander) metadata(root, field string) (any, bool) {
	s := x.step
	if root == "step" {
		switch field {
		case "attempt":
			return s.Attempt, true
		case "max_attempts":
			return s.MaxAttempts, true
		case "name":
			return s.StepName, true
		case "id":
			return s.StepID, true
		}
		return nil, false
	}
	switch field {
	case "id":
		return s.TaskID, true
	case "namespace":
		return s.Namespace, true
	case "name":
		return s.TaskName, true
	case "version":
		return s.Version, true
	}
	return nil, false
}

func (x *expander) parentNames() string {
	if len(x.step.DependencyResults) == 0 {
		return "none"
	}
	names := make(map[string]any, len(x.step.DependencyResults))
	for k := range x.step.DependencyResults {
		names[k] = nil
	}
	return strings.Join(sortedKeys(names), ", ")
}

// index steps into an object by key or into an array by decimal index.
func index(doc any, seg string) (any, error) {
	switch d := doc.(type) {
	case map[string]any:
		v, ok := d[seg]
		if !ok {
			return nil, fmt.Errorf("no key %q", seg)
		}
		return v, nil
	case []any:
		n, err := strconv.Atoi(seg)
		if err != nil || n < 0 || strconv.Itoa(n) != seg {
			return nil, fmt.Errorf("%q is not an array index", seg)
		}
		if n >= len(d) {
			return nil, fmt.Errorf("index %d out of range (length %d)", n, len(d))
		}
		return d[n], nil
	case nil:
		return nil, fmt.Errorf("cannot index null with %q", seg)
	}
	return nil, fmt.Errorf("cannot index %s with %q", typeName(doc), seg)
}

// decodeJSON decodes a JSON document keeping numbers as json.Number. An
// empty document decodes to null.
func decodeJSON(raw []byte) (any, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

// textOf renders a value as text: strings as themselves, null as "", other
// values as compact JSON.
func textOf(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	case json.Number:
		return t.String()
	case bool:
		return strconv.FormatBool(t)
	case int:
		return strconv.Itoa(t)
	case int64:
		return strconv.FormatInt(t, 10)
	}
	b, err := marshalJSON(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// marshalJSON encodes v compactly without HTML escaping.
func marshalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
