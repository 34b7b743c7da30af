package template

import (
	"fmt"
	"regexp"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"
)

// Retention bounds and the value of a retention kept for ever.
const (
	// RetentionForever is the RetentionSeconds (or RetentionFailedSeconds)
	// of a template that keeps its finished tasks for ever
	// (`retention: forever`).
	RetentionForever int64 = -1
	// RetentionMin is the shortest retention a template may give: a cron
	// tick's task must outlive the grace in which runners may still create
	// that tick (at most a minute), or its tick could be created again.
	RetentionMin = time.Minute
	// RetentionMax is the longest retention a template may give other than
	// forever (100 years).
	RetentionMax = 36500 * 24 * time.Hour
)

// rawRetention is what a template's retention fields read (seconds, or
// RetentionForever).
type rawRetention struct {
	keep, keepFailed val[int64]
}

// retentionDays matches a retention that starts with whole days ("30d",
// "1d12h"); the rest is a Go duration.
var retentionDays = regexp.MustCompile(`^(\d{1,6})d(.*)$`)

// ParseRetention reads a retention as the template's retention fields take
// it: "forever", or a duration of Go's syntax ("720h", "90m", "1h30m")
// that may start with whole days ("30d", "1d12h"), in whole seconds, from
// RetentionMin to RetentionMax. It returns seconds, or RetentionForever.
func ParseRetention(s string) (int64, error) {
	if s == "forever" {
		return RetentionForever, nil
	}
	var d time.Duration
	rest := s
	if m := retentionDays.FindStringSubmatch(s); m != nil {
		days, _ := strconv.Atoi(m[1]) // at most 6 digits
		d, rest = time.Duration(days)*24*time.Hour, m[2]
	}
	if rest != "" && (rest[0] == '-' || rest[0] == '+') && rest != s {
		return 0, fmt.Errorf("no sign after the days, got %q", clip(s))
	}
	if rest != "" || d == 0 {
		more, err := time.ParseDuration(rest)
		if err != nil {
			return 0, fmt.Errorf(`expected "forever" or a duration such as 30d, 720h or 90m, got %q`, clip(s))
		}
		d += more
	}
	switch {
	case d%time.Second != 0:
		return 0, fmt.Errorf("must be whole seconds, got %s", clip(s))
	case d < RetentionMin:
		return 0, fmt.Errorf("must be at least %s (or forever), got %s", RetentionMin, clip(s))
	case d > RetentionMax:
		return 0, fmt.Errorf("must be at most 36500d (100 years) or forever, got %s", clip(s))
	}
	return int64(d / time.Second), nil
}

// retention reads one retention field.
func (p *parser) retention(n *yaml.Node, field string) val[int64] {
	line := n.Line
	r := resolve(n)
	if isNull(r) {
		return val[int64]{}
	}
	bad := val[int64]{bad: true, line: line, field: field}
	if r.Kind != yaml.ScalarNode || r.ShortTag() != "!!str" {
		hint := ""
		if r.Kind == yaml.ScalarNode && (r.ShortTag() == "!!int" || r.ShortTag() == "!!float") {
			hint = " (give a unit: 7d, 168h, 90m)"
		}
		p.errorf(line, field, "", `expected "forever" or a duration such as 30d, 720h or 90m, got %s%s`, describe(r), hint)
		return bad
	}
	secs, err := ParseRetention(r.Value)
	if err != nil {
		p.errorf(line, field, "", "%s", err)
		return bad
	}
	return val[int64]{v: secs, set: true, line: line, field: field}
}

// templateRetention reads field f of the top-level mapping when it is a
// retention field (reporting whether it was).
func (p *parser) templateRetention(rt *rawTemplate, f kv) bool {
	switch f.key {
	case "retention":
		rt.retention.keep = p.retention(f.val, f.key)
	case "retention_failed":
		rt.retention.keepFailed = p.retention(f.val, f.key)
	default:
		return false
	}
	return true
}

// buildRetention sets t's retention from rt and checks it against the
// deduplication window: a task's idempotency key is freed when the task is
// pruned, so a retention shorter than idempotency_window_seconds would end
// the window early.
func (p *parser) buildRetention(t *Template, rt *rawTemplate) {
	for _, r := range []struct {
		v   val[int64]
		dst *int64
	}{{rt.retention.keep, &t.RetentionSeconds}, {rt.retention.keepFailed, &t.RetentionFailedSeconds}} {
		if !r.v.set {
			continue
		}
		*r.dst = r.v.v
		if w := int64(t.IdempotencyWindowSeconds); w > 0 && r.v.v != RetentionForever && r.v.v < w {
			p.errorf(r.v.line, r.v.field, "", "%s is shorter than idempotency_window_seconds (%d s): pruning a task frees "+
				"its idempotency key, which would end the window early", time.Duration(r.v.v)*time.Second, w)
		}
	}
}

// FormatRetention renders a retention in seconds the way the template
// fields take it: "forever" for RetentionForever, whole days as "30d",
// whole hours as "36h", whole minutes as "90m", else Go's duration.
func FormatRetention(secs int64) string {
	if secs == RetentionForever {
		return "forever"
	}
	d := time.Duration(secs) * time.Second
	switch {
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return d.String()
}

// catchUpTicks is how many consecutive ticks of a catch_up schedule
// checkCatchUpRetention measures the longest gap over (a year of a monthly
// schedule, with its 31-day months).
const catchUpTicks = 13

// checkCatchUpRetention refuses a retention shorter than the longest gap
// between two ticks of a catch_up schedule of t: after an outage a runner
// looks for the latest tick's task to know whether that tick ran, and a
// tick whose task was already pruned (while an older one, kept longer, is
// still there) would be created again.
func (p *parser) checkCatchUpRetention(t *Template, rt *rawTemplate) {
	for _, s := range t.Schedules {
		if s.Missed != MissedCatchUp {
			continue
		}
		var gap time.Duration
		prev := s.Next(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		for i := 0; i < catchUpTicks && !prev.IsZero(); i++ {
			next := s.Next(prev)
			if next.IsZero() {
				break
			}
			gap = max(gap, next.Sub(prev))
			prev = next
		}
		for _, r := range []val[int64]{rt.retention.keep, rt.retention.keepFailed} {
			if r.set && r.v != RetentionForever && time.Duration(r.v)*time.Second < gap {
				p.errorf(r.line, r.field, "", "%s is shorter than the %s between two ticks of catch_up schedule %s: a "+
					"restart could create a tick whose task was pruned again", FormatRetention(r.v), gap, quote(s.Name))
			}
		}
	}
}
