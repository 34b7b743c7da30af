package template

import (
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/tasker-systems/tasker/taskertype"
	"go.yaml.in/yaml/v3"
)

// Handler-class limits. A template may bound how many attempts of a handler
// class run at once, across every task of every template and every runner
// on the database:
//
//	handler_limits:
//	  ChargeCard: 2
//	  tasker:http: 50
//
// The limit belongs to the class, not to the template: a step of any
// template whose handler_class is ChargeCard starts only while fewer than 2
// attempts of ChargeCard run, in a process that knows the limit (one that
// loaded a template declaring it, or whose engine was configured with it).
// Every definition of a class's limit must agree: a registry refuses a
// template that declares a different limit for a class it already has
// (naming both), and so does SetHandlerLimit.

// MaxHandlerLimits bounds the classes one template may limit.
const MaxHandlerLimits = 100

// handlerLimitSource is where a registry's limit of a class comes from.
type handlerLimitSource struct {
	limit int
	from  string // "ns/name@1.0.0 (file.yaml)" or the Go caller's label
}

// handlerLimits is a registry's table of class limits: read lock-free on
// every claimed step (HandlerLimit), written rarely under mu.
type handlerLimits struct {
	mu      sync.Mutex
	sources map[string]handlerLimitSource
	// table is the current class -> limit map (nil: no class is limited);
	// replaced, never changed.
	table atomic.Pointer[map[string]int]
}

// HandlerLimit returns the limit of handler class class: how many of its
// attempts may run at once across all runners; 0 when it has none. A map
// lookup without locks, for the per-attempt path.
func (r *Registry) HandlerLimit(class string) int {
	m := r.limits.table.Load()
	if m == nil {
		return 0
	}
	return (*m)[class]
}

// HasHandlerLimits reports whether any handler class is limited.
func (r *Registry) HasHandlerLimits() bool { return r.limits.table.Load() != nil }

// HandlerLimits returns a copy of the class limits (nil when none).
func (r *Registry) HandlerLimits() map[string]int {
	m := r.limits.table.Load()
	if m == nil {
		return nil
	}
	out := make(map[string]int, len(*m))
	for k, v := range *m {
		out[k] = v
	}
	return out
}

// HandlerLimitConflictError is a second, different limit for a handler
// class: a class has one limit in a process, whoever declares it.
type HandlerLimitConflictError struct {
	Class string
	// Limit and From are the refused definition; Existing and ExistingFrom
	// the one already in force.
	Limit, Existing    int
	From, ExistingFrom string
}

func (e *HandlerLimitConflictError) Error() string {
	return fmt.Sprintf("handler class %s is limited to %d here (%s) but to %d in %s: a handler-class limit is shared "+
		"by every template and runner, so every definition must be the same", quote(e.Class), e.Limit, e.From,
		e.Existing, e.ExistingFrom)
}

// SetHandlerLimit limits handler class class to n attempts running at once
// (from labels the definition in messages, such as "engine config"). A
// class already limited differently is refused with a
// *HandlerLimitConflictError; n must be at least 1.
func (r *Registry) SetHandlerLimit(class string, n int, from string) error {
	if msg := handlerProblem(class, true); msg != "" {
		return fmt.Errorf("handler limit of %s: handler class %s", quote(class), msg)
	}
	if n < 1 || n > maxInt {
		return fmt.Errorf("handler limit of %s: must be between 1 and %d, got %d", quote(class), maxInt, n)
	}
	r.limits.mu.Lock()
	defer r.limits.mu.Unlock()
	if err := r.limits.conflict(class, n, from); err != nil {
		return err
	}
	r.limits.set(map[string]int{class: n}, from)
	return nil
}

// conflict reports a definition of class other than n (under mu).
func (h *handlerLimits) conflict(class string, n int, from string) *HandlerLimitConflictError {
	if old, ok := h.sources[class]; ok && old.limit != n {
		return &HandlerLimitConflictError{Class: class, Limit: n, From: from, Existing: old.limit, ExistingFrom: old.from}
	}
	return nil
}

// set adds limits (checked by conflict) and publishes the new table (under
// mu).
func (h *handlerLimits) set(limits map[string]int, from string) {
	if len(limits) == 0 {
		return
	}
	if h.sources == nil {
		h.sources = map[string]handlerLimitSource{}
	}
	table := map[string]int{}
	if m := h.table.Load(); m != nil {
		for k, v := range *m {
			table[k] = v
		}
	}
	for class, n := range limits {
		if _, ok := h.sources[class]; !ok {
			h.sources[class] = handlerLimitSource{limit: n, from: from}
		}
		table[class] = n
	}
	h.table.Store(&table)
}

// handlerLimitConflict reports a class t limits differently from the
// registry (held under r.mu), naming both definitions.
func (r *Registry) handlerLimitConflict(t *Template) taskertype.TemplateErrors {
	r.limits.mu.Lock()
	defer r.limits.mu.Unlock()
	var errs taskertype.TemplateErrors
	from := fmt.Sprintf("%s (%s)", t.Key(), fileName(t.File))
	for _, class := range slices.Sorted(maps.Keys(t.HandlerLimits)) {
		if c := r.limits.conflict(class, t.HandlerLimits[class], from); c != nil {
			errs = append(errs, &taskertype.TemplateError{File: t.File, Line: t.handlerLimitLines[class],
				Field: "handler_limits." + clip(class), Msg: c.Error()})
		}
	}
	return errs
}

// addHandlerLimits publishes the limits of an added template (under r.mu).
func (r *Registry) addHandlerLimits(t *Template) {
	r.limits.mu.Lock()
	defer r.limits.mu.Unlock()
	r.limits.set(t.HandlerLimits, fmt.Sprintf("%s (%s)", t.Key(), fileName(t.File)))
}

// rawHandlerLimit is a handler_limits entry as read.
type rawHandlerLimit struct {
	class string
	line  int
	limit val[int]
}

// handlerLimits reads the top-level handler_limits mapping (class -> N).
func (p *parser) handlerLimits(n *yaml.Node) []*rawHandlerLimit {
	line := n.Line
	r := resolve(n)
	if isNull(r) {
		return nil
	}
	if r.Kind != yaml.MappingNode {
		p.errorf(line, "handler_limits", "", "expected a mapping of handler classes to limits (ChargeCard: 2), got %s",
			describe(r))
		return nil
	}
	entries := p.mapping(r, "handler_limits", "", 0)
	if len(entries) > MaxHandlerLimits {
		p.limitf(line, "handler_limits", "", "%d handler limits, more than the limit of %d in a template", len(entries),
			MaxHandlerLimits)
		return nil
	}
	var out []*rawHandlerLimit
	for _, f := range entries {
		field := "handler_limits." + clip(f.key)
		if msg := handlerProblem(f.key, true); msg != "" {
			p.errorf(f.line, field, "", "handler class %s", msg)
			continue
		}
		out = append(out, &rawHandlerLimit{class: f.key, line: f.line, limit: p.integer(f.val, field, "", 1)})
	}
	return out
}

// buildHandlerLimits sets t's handler limits from what was read.
func (p *parser) buildHandlerLimits(t *Template, limits []*rawHandlerLimit) {
	for _, l := range limits {
		if !l.limit.set {
			if !l.limit.bad {
				p.errorf(l.line, "handler_limits."+clip(l.class), "", "missing limit: give how many attempts of the class may run at once")
			}
			continue
		}
		if t.HandlerLimits == nil {
			t.HandlerLimits, t.handlerLimitLines = map[string]int{}, map[string]int{}
		}
		t.HandlerLimits[l.class] = l.limit.v
		t.handlerLimitLines[l.class] = l.line
	}
}

// checkHandlerLimits checks the handler limits of a template built in
// memory (Parse checked its own).
func checkHandlerLimits(t *Template) taskertype.TemplateErrors {
	var errs taskertype.TemplateErrors
	if len(t.HandlerLimits) > MaxHandlerLimits {
		errs = append(errs, &taskertype.TemplateError{File: t.File, Field: "handler_limits",
			Msg: fmt.Sprintf("%d handler limits, more than the limit of %d in a template", len(t.HandlerLimits), MaxHandlerLimits)})
	}
	for _, class := range slices.Sorted(maps.Keys(t.HandlerLimits)) {
		n := t.HandlerLimits[class]
		field := "handler_limits." + clip(class)
		if msg := handlerProblem(class, true); msg != "" {
			errs = append(errs, &taskertype.TemplateError{File: t.File, Line: t.handlerLimitLines[class], Field: field,
				Msg: "handler class " + msg})
		}
		if msg := rangeProblem(int64(n), 1); msg != "" {
			errs = append(errs, &taskertype.TemplateError{File: t.File, Line: t.handlerLimitLines[class], Field: field, Msg: msg})
		}
	}
	return errs
}
