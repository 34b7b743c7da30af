package template

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tasker-systems/tasker/taskertype"
)

// Concurrency policies: what happens to a task whose key is at its limit
// when a runner is about to start it.
const (
	// PolicyQueue keeps the task pending until a task with its key
	// finishes (the default).
	PolicyQueue = "queue"
	// PolicyCancelNewest cancels the task that could not start.
	PolicyCancelNewest = "cancel_newest"
	// PolicyCancelOldest cancels the oldest running task with the key to
	// make room for the new one.
	PolicyCancelOldest = "cancel_oldest"
)

// ConcurrencyPolicies lists the accepted policies, default first.
var ConcurrencyPolicies = []string{PolicyQueue, PolicyCancelNewest, PolicyCancelOldest}

// MaxConcurrencyKeyBytes bounds a concurrency key as computed for a task.
const MaxConcurrencyKeyBytes = 256

var concurrencyFields = []string{"key", "limit", "policy"}

// Concurrency is a template's `concurrency:` block: at most Limit tasks
// whose Key (computed from each task's context at its creation) is the same
// run at once, across every runner sharing the database. A task is running
// from its start (in_progress) until it finishes; one that cannot start is
// handled by Policy.
type Concurrency struct {
	// Key is the key as written: text with ${context.PATH} references
	// (PATH: names separated by dots, [N] for a list index), for example
	// "acct-${context.account_id}". A key without references puts every
	// task of the template under one limit.
	Key string `json:"key"`
	// Limit is the most tasks with one key running at once (at least 1).
	Limit int `json:"limit"`
	// Policy is PolicyQueue (default), PolicyCancelNewest or
	// PolicyCancelOldest.
	Policy string `json:"policy"`

	parts []keyPart
}

// keyPart is literal text, or a reference to a value of the context.
type keyPart struct {
	text string
	path []pathElem // nil for literal text
	ref  string     // the reference as written, for messages
}

// pathElem is one step of a context path: a field name or a list index.
type pathElem struct {
	name  string
	index int // used when name is ""
}

// rawConcurrency is the concurrency block as read.
type rawConcurrency struct {
	line     int
	key      val[string]
	limit    val[int]
	policy   val[string]
	set, bad bool
}

// concurrency reads the template's concurrency block (its key at line).
func (p *parser) concurrency(n *yaml.Node, line int) *rawConcurrency {
	rc := &rawConcurrency{line: line}
	r := resolve(n)
	if isNull(r) {
		return rc
	}
	if r.Kind != yaml.MappingNode {
		p.errorf(n.Line, "concurrency", "", "expected a mapping with key, limit and policy, got %s", describe(r))
		rc.bad = true
		return rc
	}
	rc.set = true
	for _, f := range p.mapping(r, "concurrency", "", 0) {
		fld := "concurrency." + f.key
		switch f.key {
		case "key":
			rc.key = p.text(f.val, fld, "")
		case "limit":
			rc.limit = p.integer(f.val, fld, "", 1)
		case "policy":
			rc.policy = p.text(f.val, fld, "")
		default:
			p.unknown(f, "concurrency", "", concurrencyFields)
		}
	}
	if !rc.key.set && !rc.key.bad {
		p.errorf(rc.line, "concurrency.key", "", "missing required field: a key such as \"${context.account_id}\"")
	}
	if !rc.limit.set && !rc.limit.bad {
		p.errorf(rc.line, "concurrency.limit", "", "missing required field: the most tasks with one key running at once")
	}
	return rc
}

// buildConcurrency checks the block read and sets t.Concurrency (every
// field is checked, whatever else is wrong).
func (p *parser) buildConcurrency(t *Template, rc *rawConcurrency) {
	if rc == nil || !rc.set {
		return
	}
	c := &Concurrency{Key: rc.key.v, Limit: rc.limit.v, Policy: PolicyQueue}
	ok := rc.key.set && rc.limit.set
	if rc.policy.set {
		if isPolicy(rc.policy.v) {
			c.Policy = rc.policy.v
		} else {
			p.errorf(rc.policy.line, rc.policy.field, "", "unknown policy %s%s; policies are %s", quote(rc.policy.v),
				didYouMean(rc.policy.v, ConcurrencyPolicies), strings.Join(ConcurrencyPolicies, ", "))
			ok = false
		}
	}
	if rc.key.set {
		parts, err := parseKey(c.Key)
		if err != nil {
			p.errorf(rc.key.line, rc.key.field, "", "%v", err)
			ok = false
		}
		c.parts = parts
	}
	if ok {
		t.Concurrency = c
	}
}

// compile checks a concurrency block built in memory (Registry.Add) by the
// rules Parse applies, fills in the default policy and splits the key; it
// returns the field and the problem, or "" when c is nil or valid.
func (c *Concurrency) compile() (field, msg string) {
	if c == nil {
		return "", ""
	}
	if c.Policy == "" {
		c.Policy = PolicyQueue
	}
	if !isPolicy(c.Policy) {
		return "concurrency.policy", fmt.Sprintf("unknown policy %s; policies are %s", quote(c.Policy),
			strings.Join(ConcurrencyPolicies, ", "))
	}
	if m := rangeProblem(int64(c.Limit), 1); m != "" {
		return "concurrency.limit", m
	}
	parts, err := parseKey(c.Key)
	if err != nil {
		return "concurrency.key", err.Error()
	}
	c.parts = parts
	return "", ""
}

func isPolicy(s string) bool {
	for _, p := range ConcurrencyPolicies {
		if p == s {
			return true
		}
	}
	return false
}

// parseKey splits a key into literal text and ${context.PATH} references.
func parseKey(key string) ([]keyPart, error) {
	if strings.TrimSpace(key) == "" {
		return nil, fmt.Errorf("must not be empty")
	}
	if len(key) > MaxConcurrencyKeyBytes {
		return nil, fmt.Errorf("is %d bytes, more than the limit of %d", len(key), MaxConcurrencyKeyBytes)
	}
	var parts []keyPart
	rest := key
	for rest != "" {
		i := strings.Index(rest, "${")
		if i < 0 {
			parts = append(parts, keyPart{text: rest})
			break
		}
		if i > 0 {
			parts = append(parts, keyPart{text: rest[:i]})
		}
		end := strings.IndexByte(rest[i:], '}')
		if end < 0 {
			return nil, fmt.Errorf("reference %s is not closed with }", quote(rest[i:]))
		}
		ref := rest[i+2 : i+end]
		path, err := parseContextPath(ref)
		if err != nil {
			return nil, fmt.Errorf("reference ${%s}: %v", ref, err)
		}
		parts = append(parts, keyPart{path: path, ref: "${" + ref + "}"})
		rest = rest[i+end+1:]
	}
	return parts, nil
}

// parseContextPath reads "context.a.b[2]" (spaces around it allowed).
func parseContextPath(ref string) ([]pathElem, error) {
	s := strings.TrimSpace(ref)
	if s != "context" && !strings.HasPrefix(s, "context.") && !strings.HasPrefix(s, "context[") {
		return nil, fmt.Errorf("a key can only read the task's context: write ${context.FIELD}")
	}
	s = strings.TrimPrefix(s, "context")
	var path []pathElem
	for s != "" {
		switch s[0] {
		case '.':
			j := 1
			for j < len(s) && s[j] != '.' && s[j] != '[' {
				j++
			}
			name := s[1:j]
			if name == "" || !isFieldName(name) {
				return nil, fmt.Errorf("bad field name %s: letters, digits and _ only", quote(name))
			}
			path = append(path, pathElem{name: name})
			s = s[j:]
		case '[':
			j := strings.IndexByte(s, ']')
			if j < 0 {
				return nil, fmt.Errorf("[ without ]")
			}
			n, err := strconv.Atoi(s[1:j])
			if err != nil || n < 0 {
				return nil, fmt.Errorf("bad list index %s: a non-negative integer", quote(s[1:j]))
			}
			path = append(path, pathElem{index: n})
			s = s[j+1:]
		default:
			return nil, fmt.Errorf("unexpected %s", quote(s))
		}
	}
	if len(path) == 0 {
		return nil, fmt.Errorf("name a field of the context: ${context.FIELD}")
	}
	return path, nil
}

func isFieldName(s string) bool {
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// ConcurrencyKey computes the concurrency key of a task with context ctx:
// "" with a nil error when the template declares none. A reference to a
// missing or null value, or to an object or a list, is a
// *taskertype.RequestError naming the reference (the task is not created).
func (t *Template) ConcurrencyKey(ctx json.RawMessage) (string, error) {
	c := t.Concurrency
	if c == nil {
		return "", nil
	}
	var doc any
	var decoded bool
	var b strings.Builder
	for _, part := range c.parts {
		if part.path == nil {
			b.WriteString(part.text)
			continue
		}
		if !decoded {
			dec := json.NewDecoder(bytes.NewReader(ctx))
			dec.UseNumber()
			if err := dec.Decode(&doc); err != nil {
				return "", &taskertype.RequestError{Field: "context", Msg: "concurrency key: " + err.Error()}
			}
			decoded = true
		}
		s, err := keyValue(doc, part.path)
		if err != nil {
			return "", &taskertype.RequestError{Field: "context",
				Msg: fmt.Sprintf("concurrency key %s of %s: %s %v", c.Key, t.Key(), part.ref, err)}
		}
		b.WriteString(s)
	}
	key := b.String()
	if len(key) > MaxConcurrencyKeyBytes {
		return "", &taskertype.RequestError{Field: "context",
			Msg: fmt.Sprintf("concurrency key of %s is %d bytes, more than the limit of %d", t.Key(), len(key), MaxConcurrencyKeyBytes)}
	}
	return key, nil
}

// keyValue follows path in doc and renders the scalar found there.
func keyValue(doc any, path []pathElem) (string, error) {
	v := doc
	for _, el := range path {
		switch cur := v.(type) {
		case map[string]any:
			if el.name == "" {
				return "", fmt.Errorf("indexes an object")
			}
			next, ok := cur[el.name]
			if !ok {
				return "", fmt.Errorf("is missing")
			}
			v = next
		case []any:
			if el.name != "" {
				return "", fmt.Errorf("reads field %s of a list", quote(el.name))
			}
			if el.index >= len(cur) {
				return "", fmt.Errorf("is past the end of a list of %d", len(cur))
			}
			v = cur[el.index]
		default:
			return "", fmt.Errorf("is missing")
		}
	}
	switch x := v.(type) {
	case string:
		return x, nil
	case json.Number:
		return x.String(), nil
	case bool:
		return strconv.FormatBool(x), nil
	case nil:
		return "", fmt.Errorf("is null")
	}
	return "", fmt.Errorf("is an object or a list; a key needs a string, number or boolean")
}
