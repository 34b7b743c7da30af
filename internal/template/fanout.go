package template

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Dynamic fan-out. A step with fan_out is a placeholder: when it would run,
// the engine reads the list at Path in the result of its parent Over and
// expands the step into one child step per item, named NAME[0] .. NAME[n-1],
// each with the step's handler, configuration, retries and timeout and the
// inputs {"item": ..., "index": i}. The placeholder completes when every
// child is done, with their results as a list in item order: its
// dependents receive that list as its result.
//
//	- name: resize
//	  depends_on_step: list_images
//	  handler_class: ResizeImage
//	  fan_out: {over: list_images, path: images, max_items: 500}

// Fan-out bounds.
const (
	// FanOutMaxItemsDefault is max_items when omitted.
	FanOutMaxItemsDefault = 1000
	// FanOutMaxItemsLimit is the largest max_items accepted (a step per
	// item: the bound on a template's steps).
	FanOutMaxItemsLimit = MaxSteps
)

// fanOutFields are the keys of fan_out, in documentation order.
var fanOutFields = []string{"over", "path", "max_items"}

// FanOut is a step's fan_out: expand the step into one step per item of a
// list a parent returned.
type FanOut struct {
	// Over names the parent whose result holds the list (one of the
	// step's depends_on parents).
	Over string `json:"over"`
	// Path is a dot-separated path into Over's result (keys, and indexes
	// of lists as digits), empty for the result itself.
	Path string `json:"path,omitempty"`
	// MaxItems bounds the list: a longer one fails the step.
	MaxItems int `json:"max_items"`
}

// PathSegments returns Path split at its dots (nil when empty).
func (f *FanOut) PathSegments() []string {
	if f.Path == "" {
		return nil
	}
	return strings.Split(f.Path, ".")
}

// FanOut returns the fan_out of the named step, nil when it has none: a map
// lookup, for the coordinator's per-attempt path.
func (t *Template) FanOut(step string) *FanOut { return t.fanOuts[step] }

// rawFanOut is fan_out as read.
type rawFanOut struct {
	line     int
	field    string
	over     val[string]
	path     val[string]
	maxItems val[int]
}

// fanOutPath is the syntax of path: keys of identifier characters, dots
// between them.
var fanOutPath = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)

// fanOut reads a step's fan_out mapping.
func (p *parser) fanOut(n *yaml.Node, field, step string) val[*rawFanOut] {
	line := n.Line
	r := resolve(n)
	if isNull(r) {
		return val[*rawFanOut]{}
	}
	if r.Kind != yaml.MappingNode {
		p.errorf(line, field, step, "expected a mapping with over (and optionally path, max_items), got %s", describe(r))
		return val[*rawFanOut]{bad: true, line: line, field: field}
	}
	f := &rawFanOut{line: line, field: field}
	for _, e := range p.mapping(r, field, step, 0) {
		fld := field + "." + e.key
		switch e.key {
		case "over":
			f.over = p.stepRef(e.val, fld, step)
		case "path":
			f.path = p.text(e.val, fld, step)
			if f.path.set && !fanOutPath.MatchString(f.path.v) {
				p.errorf(f.path.line, fld, step, "path %s is not a dot-separated list of keys (letters, digits, '_', '-'), e.g. data.items",
					quote(f.path.v))
				f.path.set, f.path.bad = false, true
			}
		case "max_items":
			f.maxItems = p.integer(e.val, fld, step, 1)
			if f.maxItems.set && f.maxItems.v > FanOutMaxItemsLimit {
				p.errorf(f.maxItems.line, fld, step, "max_items %d is over the limit of %d", f.maxItems.v, FanOutMaxItemsLimit)
				f.maxItems.set, f.maxItems.bad = false, true
			}
		default:
			p.unknown(e, field, step, fanOutFields)
		}
	}
	if !f.over.set && !f.over.bad {
		p.errorf(line, field+".over", step, "missing required field: the parent step whose result lists the items")
	}
	return val[*rawFanOut]{v: f, set: true, line: line, field: field}
}

// buildFanOut checks a step's fan_out against the built step (over must be
// one of its parents) and records it on st and t.
func (p *parser) buildFanOut(t *Template, st *StepTemplate, f val[*rawFanOut]) {
	if !f.set || f.v == nil || !f.v.over.set {
		return
	}
	raw := f.v
	if !slices.Contains(st.DependsOn, raw.over.v) {
		p.errorf(raw.over.line, raw.over.field, st.Name, "fans out over %s, but %s is not a parent of %s (parents: %s)",
			raw.over.v, raw.over.v, st.Name, cmp.Or(strings.Join(st.DependsOn, ", "), "none"))
		return
	}
	fo := &FanOut{Over: raw.over.v, Path: raw.path.v, MaxItems: FanOutMaxItemsDefault}
	if raw.maxItems.set {
		fo.MaxItems = raw.maxItems.v
	}
	st.FanOut = fo
	if t.fanOuts == nil {
		t.fanOuts = map[string]*FanOut{}
	}
	t.fanOuts[st.Name] = fo
}

// FanOutChild names item index of fan-out step name: "name[index]".
func FanOutChild(name string, index int) string { return fmt.Sprintf("%s[%d]", name, index) }

// FanOutParent returns the fan-out step a child name (NAME[i]) belongs to
// and its index; ok is false for any other name. Template step names
// cannot contain '[', so the two never collide.
func FanOutParent(child string) (name string, index int, ok bool) {
	open := strings.LastIndexByte(child, '[')
	if open <= 0 || !strings.HasSuffix(child, "]") {
		return "", 0, false
	}
	digits := child[open+1 : len(child)-1]
	if digits == "" || len(digits) > 9 || (len(digits) > 1 && digits[0] == '0') {
		return "", 0, false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return "", 0, false
		}
		index = index*10 + int(c-'0')
	}
	return child[:open], index, true
}
