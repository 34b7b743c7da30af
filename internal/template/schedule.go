package template

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // time_zone must not depend on the host's zoneinfo files

	"github.com/robfig/cron/v3"
	"github.com/tasker-systems/tasker/taskertype"
	"go.yaml.in/yaml/v3"
)

// MissedPolicy says what a scheduler does with the ticks of a schedule that
// came due while no runner was up.
type MissedPolicy string

// The missed-tick policies.
const (
	// MissedSkip creates nothing for a tick found more than its grace (see
	// Schedule.Grace) after it was due. The default.
	MissedSkip MissedPolicy = "skip"
	// MissedCatchUp creates one task for the latest missed tick, however
	// late, and nothing for the earlier ones.
	MissedCatchUp MissedPolicy = "catch_up"
)

// MaxSchedules bounds the schedules one template may declare.
const MaxSchedules = 100

// scheduleFields are the keys a schedules entry accepts.
var scheduleFields = []string{"name", "cron", "time_zone", "context", "missed", "enabled"}

// cronParser reads 5-field expressions (minute hour day-of-month month
// day-of-week) and the descriptors @yearly, @monthly, @weekly, @daily,
// @hourly and @every <duration>.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Schedule is one entry of a template's schedules: a task of the template is
// created for each tick of Cron in TimeZone, with Context as its context.
type Schedule struct {
	// Name identifies the schedule within its template.
	Name string `json:"name"`
	// Cron is a 5-field cron expression (minute hour day-of-month month
	// day-of-week) or a descriptor: @yearly, @monthly, @weekly, @daily,
	// @hourly, or @every <duration> (whole seconds, at least 1s; ticks fall
	// on multiples of the duration since the Unix epoch, so every runner
	// computes the same ones).
	Cron string `json:"cron"`
	// TimeZone is the IANA zone the expression is read in. Default "UTC".
	TimeZone string `json:"time_zone"`
	// Context is the task context of every tick (default {}), checked
	// against the template's schema at load.
	Context json.RawMessage `json:"context,omitempty"`
	// Missed is the missed-tick policy. Default MissedSkip.
	Missed MissedPolicy `json:"missed"`
	// Enabled schedules create tasks. Parse sets it unless the YAML says
	// enabled: false; a template built in memory must set it.
	Enabled bool `json:"enabled"`
	// Line is the YAML line of the entry (0 when unknown).
	Line int `json:"-"`

	// Compiled by compile.
	spec     *cron.SpecSchedule
	every    time.Duration
	loc      *time.Location
	hourWild bool // the expression fires in every hour (no fall-back dedup)
}

// Location returns the schedule's time zone.
func (s *Schedule) Location() *time.Location {
	if s.loc == nil {
		return time.UTC
	}
	return s.loc
}

// Next returns the first tick strictly after t, in UTC, or the zero time
// when there is none in the next five years. A wall-clock time that a
// fall-back DST change repeats ticks once (at its first occurrence), unless
// the expression fires every hour; a wall-clock time that a spring-forward
// change skips does not tick that day.
func (s *Schedule) Next(t time.Time) time.Time {
	if s.every > 0 {
		d := s.every.Nanoseconds()
		n := t.UnixNano()
		k := n / d
		if n < 0 && n%d != 0 {
			k-- // floor for times before 1970
		}
		return time.Unix(0, (k+1)*d).UTC()
	}
	if s.spec == nil {
		return time.Time{}
	}
	n := s.spec.Next(t)
	for !n.IsZero() && !s.hourWild && s.repeatedWallClock(n) {
		n = s.spec.Next(n)
	}
	if n.IsZero() {
		return n
	}
	return n.UTC()
}

// repeatedWallClock reports whether the local wall-clock time of n already
// happened earlier the same day (a fall-back DST change).
func (s *Schedule) repeatedWallClock(n time.Time) bool {
	loc := s.Location()
	ln := n.In(loc)
	for _, back := range []time.Duration{30 * time.Minute, time.Hour, 2 * time.Hour} {
		e := n.Add(-back).In(loc)
		if e.Year() == ln.Year() && e.YearDay() == ln.YearDay() && e.Hour() == ln.Hour() && e.Minute() == ln.Minute() {
			return true
		}
	}
	return false
}

// Prev returns the latest tick at or before t, in UTC, or the zero time
// when there is none in the preceding eight years.
func (s *Schedule) Prev(t time.Time) time.Time {
	if s.every > 0 {
		return s.Next(t.Add(-s.every))
	}
	for w := time.Minute; w <= 8*366*24*time.Hour; w *= 8 {
		var last time.Time
		for x := t.Add(-w); ; {
			n := s.Next(x)
			if n.IsZero() || n.After(t) {
				break
			}
			last, x = n, n
		}
		if !last.IsZero() {
			return last
		}
	}
	return time.Time{}
}

// Interval returns the time between the tick at or before t and the one
// after it (the @every duration for @every schedules); 0 when either is
// unknown.
func (s *Schedule) Interval(t time.Time) time.Duration {
	if s.every > 0 {
		return s.every
	}
	n := s.Next(t)
	p := s.Prev(t)
	if n.IsZero() || p.IsZero() {
		return 0
	}
	return n.Sub(p)
}

// GraceMax bounds a tick's grace.
const GraceMax = time.Minute

// Grace returns how late after tick a scheduler that was not running at
// the tick may still create it as on time: half the interval that starts at
// tick, at most GraceMax. Not a whole interval: the latest tick is always
// less than one interval old, so a whole-interval grace would make every
// start catch up, and skip would mean nothing for schedules under two
// minutes.
func (s *Schedule) Grace(tick time.Time) time.Duration {
	if iv := s.Interval(tick); iv > 0 && iv/2 < GraceMax {
		return iv / 2
	}
	return GraceMax
}

// compile checks the schedule's fields (not its context, which needs the
// template) and prepares Next. It returns one message per problem, each
// with the field it is about ("cron", "time_zone", "missed", "name").
func (s *Schedule) compile() []fieldProblem {
	var out []fieldProblem
	if msg := identProblem(s.Name); msg != "" {
		out = append(out, fieldProblem{"name", msg})
	}
	switch s.Missed {
	case MissedSkip, MissedCatchUp:
	default:
		out = append(out, fieldProblem{"missed", fmt.Sprintf("%s is not a missed-tick policy: use %q (the default) or %q",
			quote(string(s.Missed)), MissedSkip, MissedCatchUp)})
	}
	s.loc = nil
	if s.TimeZone == "" || s.TimeZone == "Local" {
		if s.TimeZone == "Local" {
			out = append(out, fieldProblem{"time_zone", `"Local" depends on the machine: name an IANA zone such as "Europe/Berlin" or "UTC"`})
		}
	} else if loc, err := time.LoadLocation(s.TimeZone); err != nil {
		out = append(out, fieldProblem{"time_zone", fmt.Sprintf("unknown time zone %s: name an IANA zone such as \"America/New_York\" or \"UTC\"", quote(s.TimeZone))})
	} else {
		s.loc = loc
	}
	if msg := s.compileCron(); msg != "" {
		out = append(out, fieldProblem{"cron", msg})
	}
	return out
}

// compileCron parses Cron; it returns why it cannot, or "".
func (s *Schedule) compileCron() string {
	s.spec, s.every, s.hourWild = nil, 0, false
	expr := strings.TrimSpace(s.Cron)
	if expr == "" {
		return "must not be empty: a 5-field cron expression such as \"*/5 * * * *\", or @hourly, @daily, @every 10m ..."
	}
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return "set the zone with time_zone, not a TZ= prefix in the expression"
	}
	parsed, err := cronParser.Parse(expr)
	if err != nil {
		return fmt.Sprintf("invalid cron expression %s: %v (want 5 fields: minute hour day-of-month month day-of-week, or @hourly, @daily, @every 10m ...)", quote(expr), err)
	}
	switch sc := parsed.(type) {
	case cron.ConstantDelaySchedule:
		d, err := time.ParseDuration(strings.TrimSpace(strings.TrimPrefix(expr, "@every")))
		if err != nil || d < time.Second || d%time.Second != 0 {
			return fmt.Sprintf("%s: @every takes a duration of whole seconds, at least 1s", quote(expr))
		}
		s.every = d
	case *cron.SpecSchedule:
		sc.Location = s.Location()
		s.spec = sc
		const allHours = 1<<24 - 1
		s.hourWild = sc.Hour&allHours == allHours
		if s.Next(time.Now()).IsZero() {
			return fmt.Sprintf("%s never fires (no matching date in the next five years)", quote(expr))
		}
	default:
		return fmt.Sprintf("%s: unsupported schedule", quote(expr))
	}
	return ""
}

// fieldProblem is one problem of a schedule: the field below the entry and
// the message.
type fieldProblem struct{ field, msg string }

// rawSchedule is a schedules entry as read.
type rawSchedule struct {
	line    int
	field   string // "schedules[1]"
	name    val[string]
	cron    val[string]
	zone    val[string]
	context val[map[string]any]
	missed  val[string]
	enabled val[bool]
	// lines of the fields, for compile's problems
	lines map[string]int
}

// schedules reads the schedules list.
func (p *parser) schedules(n *yaml.Node) val[[]*rawSchedule] {
	line := n.Line
	r := resolve(n)
	if isNull(r) {
		return val[[]*rawSchedule]{}
	}
	if r.Kind != yaml.SequenceNode {
		p.errorf(line, "schedules", "", "expected a list of schedules, got %s", describe(r))
		return val[[]*rawSchedule]{bad: true}
	}
	if len(r.Content) > MaxSchedules {
		p.limitf(line, "schedules", "", "%d schedules, more than the limit of %d schedules in a template", len(r.Content), MaxSchedules)
		return val[[]*rawSchedule]{bad: true}
	}
	out := val[[]*rawSchedule]{set: true, line: line, field: "schedules"}
	for i, item := range r.Content {
		field := fmt.Sprintf("schedules[%d]", i)
		ri := resolve(item)
		if ri.Kind != yaml.MappingNode {
			p.errorf(item.Line, field, "", "expected a schedule (a mapping with name and cron), got %s", describe(ri))
			continue
		}
		s := &rawSchedule{line: item.Line, field: field, lines: map[string]int{}}
		for _, f := range p.mapping(ri, field, "", 0) {
			fld := field + "." + f.key
			s.lines[f.key] = f.line
			switch f.key {
			case "name":
				s.name = p.identifier(f.val, fld, "")
			case "cron":
				s.cron = p.text(f.val, fld, "")
			case "time_zone":
				s.zone = p.text(f.val, fld, "")
			case "context":
				s.context = p.object(f.val, fld, "")
			case "missed":
				s.missed = p.text(f.val, fld, "")
			case "enabled":
				s.enabled = p.boolean(f.val, fld, "")
			default:
				p.unknown(f, field, "", scheduleFields)
			}
		}
		if !s.name.set && !s.name.bad {
			p.errorf(s.line, field+".name", "", "missing required field")
		}
		if !s.cron.set && !s.cron.bad {
			p.errorf(s.line, field+".cron", "", "missing required field: a cron expression such as \"0 3 * * *\"")
		}
		out.v = append(out.v, s)
	}
	return out
}

// buildSchedules turns the entries read into t.Schedules, reporting each
// problem at its field's line. It runs after the schema is compiled.
func (p *parser) buildSchedules(t *Template, raw []*rawSchedule) {
	seen := map[string]int{}
	for _, r := range raw {
		s := &Schedule{Name: r.name.v, Cron: r.cron.v, TimeZone: "UTC", Missed: MissedSkip, Enabled: true, Line: r.line}
		if r.zone.set {
			s.TimeZone = r.zone.v
		}
		if r.missed.set {
			s.Missed = MissedPolicy(r.missed.v)
		}
		if r.enabled.set {
			s.Enabled = r.enabled.v
		}
		lineOf := func(field string) int { return cmpLine(r.lines[field], r.line) }
		if r.name.set {
			if first, dup := seen[s.Name]; dup {
				p.errorf(r.name.line, r.field+".name", "", "schedule %s is defined twice (first at line %d)", quote(s.Name), first)
			} else {
				seen[s.Name] = r.name.line
			}
		}
		for _, fp := range s.compile() {
			if fp.field == "name" || (fp.field == "cron" && !r.cron.set) {
				continue // reported when read
			}
			p.errorf(lineOf(fp.field), r.field+"."+fp.field, "", "%s", fp.msg)
		}
		ctx := json.RawMessage(`{}`)
		if r.context.set {
			b, err := toJSON(r.context.v)
			if err != nil {
				p.errorf(lineOf("context"), r.field+".context", "", "%v", err)
				continue
			}
			ctx = b
		}
		s.Context = ctx
		if msg := scheduleContextProblem(t, ctx); msg != "" {
			p.errorf(lineOf("context"), r.field+".context", "", "%s", msg)
		}
		t.Schedules = append(t.Schedules, s)
	}
}

// cmpLine returns line, or fallback when line is 0.
func cmpLine(line, fallback int) int {
	if line == 0 {
		return fallback
	}
	return line
}

// scheduleContextProblem checks a schedule's context against the
// template's schema; it returns the violations as one message, or "".
func scheduleContextProblem(t *Template, ctx json.RawMessage) string {
	err := t.ValidateContext(ctx)
	if err == nil {
		return ""
	}
	var ce *taskertype.ContextValidationError
	if !errors.As(err, &ce) {
		return "context: " + err.Error()
	}
	parts := make([]string, 0, len(ce.Violations))
	for _, v := range ce.Violations {
		if v.Path != "" {
			parts = append(parts, v.Path+": "+v.Message)
		} else {
			parts = append(parts, v.Message)
		}
	}
	return "context does not match the template's schema: " + strings.Join(parts, "; ")
}

// checkSchedules validates the schedules of a template built in memory
// (Registry.Add) and compiles them; missing TimeZone and Missed get their
// defaults.
func checkSchedules(t *Template) taskertype.TemplateErrors {
	var errs taskertype.TemplateErrors
	seen := map[string]bool{}
	for i, s := range t.Schedules {
		field := fmt.Sprintf("schedules[%d]", i)
		if s == nil {
			errs = append(errs, &taskertype.TemplateError{File: t.File, Field: field, Msg: "schedule is nil"})
			continue
		}
		if s.TimeZone == "" {
			s.TimeZone = "UTC"
		}
		if s.Missed == "" {
			s.Missed = MissedSkip
		}
		if len(s.Context) == 0 {
			s.Context = json.RawMessage(`{}`)
		}
		if s.Name != "" && seen[s.Name] {
			errs = append(errs, &taskertype.TemplateError{File: t.File, Line: s.Line, Field: field + ".name",
				Msg: fmt.Sprintf("schedule %s is defined twice", quote(s.Name))})
		}
		seen[s.Name] = true
		for _, fp := range s.compile() {
			errs = append(errs, &taskertype.TemplateError{File: t.File, Line: s.Line, Field: field + "." + fp.field, Msg: fp.msg})
		}
		if msg := scheduleContextProblem(t, s.Context); msg != "" {
			errs = append(errs, &taskertype.TemplateError{File: t.File, Line: s.Line, Field: field + ".context", Msg: msg})
		}
	}
	if len(t.Schedules) > MaxSchedules {
		errs = append(errs, &taskertype.TemplateError{File: t.File, Field: "schedules",
			Msg: fmt.Sprintf("%d schedules, more than the limit of %d schedules in a template", len(t.Schedules), MaxSchedules)})
	}
	return errs
}

// Schedule returns the schedule with the given name, or nil.
func (t *Template) Schedule(name string) *Schedule {
	for _, s := range t.Schedules {
		if s.Name == name {
			return s
		}
	}
	return nil
}
