package template

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"

	"github.com/tasker-systems/tasker/taskertype"
	"go.yaml.in/yaml/v3"
)

// Rate limits. A template declares named limits at its top level and a step
// names one of them:
//
//	rate_limits:
//	  stripe: {per_second: 25, burst: 50}
//	  mailer: {per_minute: 100}
//	step_templates:
//	  - name: charge
//	    handler_class: tasker:http
//	    rate_limit: stripe
//
// A limit is shared by name by every step that names it, in every task of
// every template, across all runners (the engine keeps one token bucket per
// name in the database). Every template that defines a name must define it
// the same way: a second, different definition is refused when the
// template is added to a registry (a load error naming both files), so a
// process never holds two meanings of one name.

// MaxRate bounds a limit's rate (tokens per second) and MaxBurst its burst.
const (
	MaxRate  = 1_000_000
	MaxBurst = 1_000_000
)

// MaxRateLimits bounds the limits one template may declare.
const MaxRateLimits = 100

// rateLimitFields are the keys a rate_limits entry accepts.
var rateLimitFields = []string{"per_second", "per_minute", "burst"}

// RateLimit is one named limit of rate_limits: a token bucket that refills
// at PerSecond (or PerMinute / 60) tokens a second up to Burst tokens. A
// step naming it starts its handler only with a token.
type RateLimit struct {
	// Name identifies the limit across templates.
	Name string `json:"name"`
	// PerSecond or PerMinute (exactly one is set) is the refill rate.
	PerSecond float64 `json:"per_second,omitempty"`
	PerMinute float64 `json:"per_minute,omitempty"`
	// Burst is the bucket's size: how many steps may start at once after
	// the limit was idle. Default: a second's worth of tokens (at least 1).
	Burst int `json:"burst"`
	// Line is the YAML line of the limit's entry (0 when unknown).
	Line int `json:"-"`
}

// Rate returns the refill rate in tokens per second.
func (l *RateLimit) Rate() float64 {
	if l.PerSecond > 0 {
		return l.PerSecond
	}
	return l.PerMinute / 60
}

// String renders the limit as "stripe (25/s, burst 50)".
func (l *RateLimit) String() string {
	if l.PerSecond > 0 {
		return fmt.Sprintf("%s (%s/s, burst %d)", l.Name, strconv.FormatFloat(l.PerSecond, 'f', -1, 64), l.Burst)
	}
	return fmt.Sprintf("%s (%s/min, burst %d)", l.Name, strconv.FormatFloat(l.PerMinute, 'f', -1, 64), l.Burst)
}

// same reports whether two definitions of a name mean the same limit.
func (l *RateLimit) same(o *RateLimit) bool {
	return l.Rate() == o.Rate() && l.Burst == o.Burst
}

// StepRateLimit returns the limit the named step names, nil when it names
// none: a map lookup, for the coordinator's per-attempt path. The items of
// a fan-out step (NAME[i]) run under their step's limit.
func (t *Template) StepRateLimit(step string) *RateLimit {
	if len(t.stepLimits) == 0 {
		return nil
	}
	if l := t.stepLimits[step]; l != nil {
		return l
	}
	if name, _, ok := FanOutParent(step); ok {
		return t.stepLimits[name]
	}
	return nil
}

// HasRateLimits reports whether any step of the template names a limit.
func (t *Template) HasRateLimits() bool { return len(t.stepLimits) > 0 }

// rawRateLimit is a rate_limits entry as read.
type rawRateLimit struct {
	name      string
	line      int
	field     string
	perSecond val[float64]
	perMinute val[float64]
	burst     val[int]
}

// rateLimits reads the top-level rate_limits mapping (name -> limit).
func (p *parser) rateLimits(n *yaml.Node) val[[]*rawRateLimit] {
	line := n.Line
	r := resolve(n)
	if isNull(r) {
		return val[[]*rawRateLimit]{}
	}
	if r.Kind != yaml.MappingNode {
		p.errorf(line, "rate_limits", "", "expected a mapping of limit names to limits, got %s", describe(r))
		return val[[]*rawRateLimit]{bad: true}
	}
	entries := p.mapping(r, "rate_limits", "", 0)
	if len(entries) > MaxRateLimits {
		p.limitf(line, "rate_limits", "", "%d rate limits, more than the limit of %d in a template", len(entries), MaxRateLimits)
		return val[[]*rawRateLimit]{bad: true}
	}
	out := val[[]*rawRateLimit]{set: true, line: line, field: "rate_limits"}
	for _, f := range entries {
		field := "rate_limits." + clip(f.key)
		if msg := identProblem(f.key); msg != "" {
			p.errorf(f.line, field, "", "rate limit name: %s", msg)
			continue
		}
		body := resolve(f.val)
		if body.Kind != yaml.MappingNode {
			p.errorf(f.line, field, "", "expected a limit (a mapping with per_second or per_minute, and burst), got %s",
				describe(body))
			continue
		}
		l := &rawRateLimit{name: f.key, line: f.line, field: field}
		for _, g := range p.mapping(body, field, "", 0) {
			fld := field + "." + g.key
			switch g.key {
			case "per_second":
				l.perSecond = p.positive(g.val, fld)
			case "per_minute":
				l.perMinute = p.positive(g.val, fld)
			case "burst":
				l.burst = p.integer(g.val, fld, "", 1)
				if l.burst.set && l.burst.v > MaxBurst {
					p.errorf(l.burst.line, fld, "", "must be at most %d, got %d", MaxBurst, l.burst.v)
					l.burst.set, l.burst.bad = false, true
				}
			default:
				p.unknown(g, field, "", rateLimitFields)
			}
		}
		switch {
		case l.perSecond.set && l.perMinute.set:
			p.errorf(l.perMinute.line, field+".per_minute", "", "per_second and per_minute are exclusive: give one")
		case !l.perSecond.set && !l.perMinute.set && !l.perSecond.bad && !l.perMinute.bad:
			p.errorf(f.line, field, "", "missing per_second or per_minute: a limit needs a rate")
		}
		out.v = append(out.v, l)
	}
	return out
}

// positive reads a number (integer or decimal) greater than 0 and at most
// MaxRate.
func (p *parser) positive(n *yaml.Node, field string) val[float64] {
	line := n.Line
	r := resolve(n)
	if isNull(r) {
		return val[float64]{}
	}
	bad := val[float64]{bad: true, line: line, field: field}
	if r.Kind != yaml.ScalarNode || (r.ShortTag() != "!!int" && r.ShortTag() != "!!float") {
		p.errorf(line, field, "", "expected a number, got %s", describe(r))
		return bad
	}
	f, err := strconv.ParseFloat(r.Value, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		p.errorf(line, field, "", "expected a finite number, got %s", clip(r.Value))
		return bad
	}
	if f <= 0 {
		p.errorf(line, field, "", "must be greater than 0, got %s", clip(r.Value))
		return bad
	}
	if f > MaxRate {
		p.errorf(line, field, "", "must be at most %d, got %s", MaxRate, clip(r.Value))
		return bad
	}
	return val[float64]{v: f, set: true, line: line, field: field}
}

// buildRateLimits sets t's limits from rt and resolves the limit each step
// names; a step naming a limit the template does not define is an error
// located at its rate_limit field.
func (p *parser) buildRateLimits(t *Template, limits []*rawRateLimit, steps []*rawStep) {
	var names []string
	for _, l := range limits {
		if !l.perSecond.set && !l.perMinute.set {
			continue // reported
		}
		rl := &RateLimit{Name: l.name, PerSecond: l.perSecond.v, PerMinute: l.perMinute.v, Burst: l.burst.v, Line: l.line}
		if !l.burst.set {
			rl.Burst = defaultBurst(rl.Rate())
		}
		if t.RateLimits == nil {
			t.RateLimits = map[string]*RateLimit{}
		}
		t.RateLimits[l.name] = rl
		names = append(names, l.name)
	}
	slices.Sort(names)
	for i, s := range steps {
		if !s.rateLimit.set || i >= len(t.Steps) {
			continue
		}
		st := t.Steps[i]
		if _, ok := t.RateLimits[s.rateLimit.v]; !ok {
			if !slices.ContainsFunc(limits, func(l *rawRateLimit) bool { return l.name == s.rateLimit.v }) {
				p.errorf(s.rateLimit.line, s.rateLimit.field, st.Name, "rate limit %s is not defined in rate_limits%s",
					quote(s.rateLimit.v), limitChoices(s.rateLimit.v, names))
			}
			continue
		}
		st.RateLimit = s.rateLimit.v
	}
	t.indexRateLimits()
}

// limitChoices suggests a defined limit, or lists them.
func limitChoices(name string, names []string) string {
	if len(names) == 0 {
		return " (the template defines none)"
	}
	if s := didYouMean(name, names); s != "" {
		return s
	}
	return fmt.Sprintf(" (defined: %v)", names)
}

// defaultBurst is a second's worth of tokens, at least 1.
func defaultBurst(rate float64) int {
	return int(max(1, min(math.Ceil(rate), MaxBurst)))
}

// indexRateLimits maps each step that names a limit to it.
func (t *Template) indexRateLimits() {
	t.stepLimits = nil
	for _, st := range t.Steps {
		if st == nil || st.RateLimit == "" {
			continue
		}
		if l := t.RateLimits[st.RateLimit]; l != nil {
			if t.stepLimits == nil {
				t.stepLimits = map[string]*RateLimit{}
			}
			t.stepLimits[st.Name] = l
		}
	}
}

// checkRateLimits checks the limits of a template built in memory (Parse
// checked its own) and indexes them: names, rates, bursts, and that every
// step names a defined limit.
func checkRateLimits(t *Template) taskertype.TemplateErrors {
	var errs taskertype.TemplateErrors
	add := func(line int, field, step, format string, args ...any) {
		errs = append(errs, &taskertype.TemplateError{File: t.File, Line: line, Field: field, Step: step,
			Msg: fmt.Sprintf(format, args...)})
	}
	if len(t.RateLimits) > MaxRateLimits {
		add(0, "rate_limits", "", "%d rate limits, more than the limit of %d in a template", len(t.RateLimits), MaxRateLimits)
	}
	for name, l := range t.RateLimits {
		field := "rate_limits." + clip(name)
		switch {
		case l == nil:
			add(0, field, "", "rate limit is nil")
			continue
		case identProblem(name) != "":
			add(l.Line, field, "", "rate limit name: %s", identProblem(name))
		}
		l.Name = name
		switch {
		case l.PerSecond != 0 && l.PerMinute != 0:
			add(l.Line, field+".per_minute", "", "per_second and per_minute are exclusive: give one")
		case !(l.Rate() > 0) || math.IsInf(l.Rate(), 0):
			add(l.Line, field, "", "the rate must be greater than 0")
		case l.PerSecond > MaxRate || l.PerMinute > MaxRate:
			add(l.Line, field, "", "the rate must be at most %d", MaxRate)
		}
		if l.Burst == 0 && l.Rate() > 0 {
			l.Burst = defaultBurst(l.Rate())
		}
		if (l.Burst != 0 || l.Rate() > 0) && (l.Burst < 1 || l.Burst > MaxBurst) {
			add(l.Line, field+".burst", "", "must be between 1 and %d, got %d", MaxBurst, l.Burst)
		}
	}
	for i, st := range t.Steps {
		if st != nil && st.RateLimit != "" && t.RateLimits[st.RateLimit] == nil {
			add(st.Line, fmt.Sprintf("step_templates[%d].rate_limit", i), st.Name, "rate limit %s is not defined in rate_limits",
				quote(st.RateLimit))
		}
	}
	if len(errs) == 0 {
		t.indexRateLimits()
	}
	return errs
}

// rateLimitConflict reports a limit t defines differently from a template
// already in the registry (held under r.mu), naming both files.
func (r *Registry) rateLimitConflict(t *Template) taskertype.TemplateErrors {
	var errs taskertype.TemplateErrors
	// The others in key order, so that the error names the same template
	// every time (the first that disagrees).
	keys := slices.Sorted(maps.Keys(r.byKey))
	for _, name := range slices.Sorted(maps.Keys(t.RateLimits)) {
		l := t.RateLimits[name]
		for _, k := range keys {
			o := r.byKey[k]
			ol := o.RateLimits[name]
			if ol == nil || ol.same(l) {
				continue
			}
			errs = append(errs, &taskertype.TemplateError{File: t.File, Line: l.Line, Field: "rate_limits." + clip(name),
				Msg: fmt.Sprintf("rate limit %s is %s here but %s in %s (%s): a limit is shared by name, so every "+
					"template must define it the same way", quote(name), l, ol, o.Key(), fileName(o.File))})
			break
		}
	}
	return errs
}
