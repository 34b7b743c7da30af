package template

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/tasker-systems/tasker/taskertype"
)

const scheduleYAML = `name: report
schema:
  type: object
  required: [kind]
  properties: {kind: {type: string}}
step_templates:
  - name: build
    handler_class: tasker:noop
schedules:
  - name: nightly            # line 10
    cron: "30 2 * * *"
    time_zone: America/New_York
    context: {kind: full}
    missed: catch_up
  - name: often              # line 15
    cron: "@every 10s"
    context: {kind: quick}
  - name: paused             # line 18
    cron: "@hourly"
    context: {kind: quick}
    enabled: false
`

func TestParseSchedules(t *testing.T) {
	tmpl, errs := Parse("report.yaml", []byte(scheduleYAML), "")
	require.Nil(t, errs)
	require.Len(t, tmpl.Schedules, 3)
	n := tmpl.Schedule("nightly")
	require.Equal(t, "America/New_York", n.TimeZone)
	require.Equal(t, MissedCatchUp, n.Missed)
	require.True(t, n.Enabled)
	require.JSONEq(t, `{"kind":"full"}`, string(n.Context))
	require.Equal(t, 10, n.Line)
	o := tmpl.Schedule("often")
	require.Equal(t, "UTC", o.TimeZone)
	require.Equal(t, MissedSkip, o.Missed)
	require.False(t, tmpl.Schedule("paused").Enabled)

	// 02:30 New York is 06:30 UTC in summer time.
	at := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	require.Equal(t, time.Date(2026, 6, 2, 6, 30, 0, 0, time.UTC), n.Next(at))
	require.Equal(t, time.Date(2026, 6, 1, 6, 30, 0, 0, time.UTC), n.Prev(at))
	// @every ticks on multiples of its duration since the epoch, whatever t is.
	require.Equal(t, time.Date(2026, 6, 1, 12, 0, 10, 0, time.UTC), o.Next(at))
	require.Equal(t, time.Date(2026, 6, 1, 12, 0, 10, 0, time.UTC), o.Next(at.Add(3*time.Second)))
	require.Equal(t, at, o.Prev(at))
	require.Equal(t, at, o.Prev(at.Add(9*time.Second)))
	require.Equal(t, 5*time.Second, o.Grace(at))
	require.Equal(t, GraceMax, n.Grace(at))
}

// TestScheduleDST pins what the zone does to ticks: a spring-forward day
// has no 02:30 in New York (no tick that day), and a fall-back day repeats
// 01:30, which ticks once; an every-hour expression ticks in both 01:xx
// hours.
func TestScheduleDST(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	require.NoError(t, err)
	compile := func(expr string) *Schedule {
		s := &Schedule{Name: "s", Cron: expr, TimeZone: "America/New_York", Missed: MissedSkip}
		require.Empty(t, s.compile())
		return s
	}
	ticks := func(s *Schedule, from time.Time, n int) []time.Time {
		var out []time.Time
		for x := from; len(out) < n; {
			x = s.Next(x)
			out = append(out, x)
		}
		return out
	}
	spring := compile("30 2 * * *")
	got := ticks(spring, time.Date(2026, 3, 7, 12, 0, 0, 0, ny), 2)
	require.Equal(t, time.Date(2026, 3, 9, 2, 30, 0, 0, ny).UTC(), got[0], "no 02:30 on 2026-03-08")

	fall := compile("30 1 * * *")
	got = ticks(fall, time.Date(2026, 10, 31, 12, 0, 0, 0, ny), 2)
	require.Equal(t, time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC), got[0]) // 01:30 EDT
	require.Equal(t, time.Date(2026, 11, 2, 6, 30, 0, 0, time.UTC), got[1], "01:30 EST is not a second tick")
	require.Equal(t, got[0], fall.Prev(got[1].Add(-time.Minute)))

	hourly := compile("30 * * * *")
	got = ticks(hourly, time.Date(2026, 11, 1, 0, 0, 0, 0, ny), 3)
	require.Equal(t, []time.Time{
		time.Date(2026, 11, 1, 4, 30, 0, 0, time.UTC), // 00:30 EDT
		time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC), // 01:30 EDT
		time.Date(2026, 11, 1, 6, 30, 0, 0, time.UTC), // 01:30 EST
	}, got)
}

func TestScheduleProblems(t *testing.T) {
	yaml := `name: report
schema:
  type: object
  required: [kind]
step_templates:
  - name: build
    handler_class: tasker:noop
schedules:
  - name: a                  # line 9
    cron: "61 * * * *"
    context: {kind: x}
  - name: a                  # line 12
    cron: "@daily"
    time_zone: Mars/Olympus
    missed: later
    context: {other: 1}
  - cron: "@every 500ms"     # line 17
    contxt: {}
    context: {kind: x}
  - name: b                  # line 20
    cron: "TZ=UTC 0 * * * *"
    context: {kind: x}
  - name: c                  # line 23
    cron: "0 0 30 2 *"
    enabled: "no"
    context: {kind: x}
  - name: d                  # line 27
    time_zone: Local
    context: {kind: x}
`
	_, errs := Parse("r.yaml", []byte(yaml), "")
	want := []struct {
		line  int
		field string
		msg   string
	}{
		{10, "schedules[0].cron", "invalid cron expression"},
		{12, "schedules[1].name", `schedule "a" is defined twice (first at line 9)`},
		{14, "schedules[1].time_zone", `unknown time zone "Mars/Olympus"`},
		{15, "schedules[1].missed", `"later" is not a missed-tick policy`},
		{16, "schedules[1].context", `context does not match the template's schema`},
		{17, "schedules[2].name", "missing required field"},
		{17, "schedules[2].cron", "whole seconds"},
		{18, "schedules[2].contxt", `unknown field "contxt" (did you mean "context"?)`},
		{21, "schedules[3].cron", "TZ= prefix"},
		{24, "schedules[4].cron", "never fires"},
		{25, "schedules[4].enabled", "expected a boolean"},
		{27, "schedules[5].cron", "missing required field"},
		{28, "schedules[5].time_zone", `"Local" depends on the machine`},
	}
	for _, w := range want {
		found := false
		for _, e := range errs {
			if e.File == "r.yaml" && e.Line == w.line && e.Field == w.field && strings.Contains(e.Msg, w.msg) {
				found = true
			}
		}
		require.Truef(t, found, "want line %d %s %q in:\n%s", w.line, w.field, w.msg, errs.Error())
	}
	require.Len(t, errs, len(want), errs.Error())
}

func TestRegistryAddChecksSchedules(t *testing.T) {
	base := func(s ...*Schedule) *Template {
		return &Template{Name: "t", Steps: []*StepTemplate{{Name: "a", HandlerClass: "tasker:noop"}}, Schedules: s}
	}
	r := NewRegistry()
	ok := base(&Schedule{Name: "s", Cron: "*/5 * * * *", Enabled: true})
	require.NoError(t, r.Add(ok))
	require.Equal(t, "UTC", ok.Schedules[0].TimeZone)
	require.Equal(t, MissedSkip, ok.Schedules[0].Missed)
	require.False(t, ok.Schedules[0].Next(time.Now()).IsZero())

	err := r.Add(base(&Schedule{Name: "s", Cron: "nope"}, &Schedule{Name: "s", Cron: "@daily", TimeZone: "Nowhere/City"}))
	var te taskertype.TemplateErrors
	require.ErrorAs(t, err, &te)
	require.Contains(t, err.Error(), "schedules[0].cron")
	require.Contains(t, err.Error(), "schedules[1].name")
	require.Contains(t, err.Error(), "schedules[1].time_zone")
}
