package template

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// A template's retention fields: "forever" or a duration (Go's syntax,
// whole days allowed), in whole seconds, read into RetentionSeconds and
// RetentionFailedSeconds; unset fields stay 0 (the engine's default).
func TestParseRetention(t *testing.T) {
	t.Parallel()
	tm, errs := Parse("t.yml", []byte("name: a\nretention: 7d\nretention_failed: forever\n"+
		"step_templates: [{name: b, handler_class: X}]\n"), "")
	require.Empty(t, errs)
	require.Equal(t, int64(7*86400), tm.RetentionSeconds)
	require.Equal(t, RetentionForever, tm.RetentionFailedSeconds)
	tm, errs = Parse("t.yml", []byte("name: a\nretention: 1d\nstep_templates: [{name: b, handler_class: X}]\n"+
		"schedules:\n  - {name: nightly, cron: '30 2 * * *', missed: catch_up}\n  - {name: often, cron: '@every 1m'}\n"), "")
	require.Empty(t, errs, "a day covers a daily catch_up schedule; a skip schedule needs nothing")
	tm, errs = Parse("t.yml", []byte("name: a\nstep_templates: [{name: b, handler_class: X}]\n"), "")
	require.Empty(t, errs)
	require.Zero(t, tm.RetentionSeconds)
	require.Zero(t, tm.RetentionFailedSeconds)

	for in, want := range map[string]int64{"forever": RetentionForever, "1m": 60, "90m": 5400, "720h": 720 * 3600,
		"30d": 30 * 86400, "1d12h": 36 * 3600, "36500d": 36500 * 86400, "1h30m": 5400} {
		got, err := ParseRetention(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "0", "0d", "-1h", "59s", "1.5s", "36501d", "7 days", "d", "1d-1h", "Forever"} {
		_, err := ParseRetention(in)
		require.Error(t, err, in)
	}
}

// Retention problems are reported with the file, line and field.
func TestParseRetentionProblems(t *testing.T) {
	t.Parallel()
	const steps = "step_templates: [{name: b, handler_class: X}]\n"
	for _, tc := range []struct {
		name, yaml string
		want       problem
	}{
		{"unparsable", "name: a\nretention: a week\n" + steps,
			problem{line: 2, field: "retention", msg: []string{`expected "forever" or a duration`, `"a week"`}}},
		{"negative", "name: a\nretention_failed: -2h\n" + steps,
			problem{line: 2, field: "retention_failed", msg: []string{"must be at least 1m0s (or forever), got -2h"}}},
		{"below a minute", "name: a\nretention: 30s\n" + steps,
			problem{line: 2, field: "retention", msg: []string{"must be at least 1m0s"}}},
		{"an integer", "name: a\n\nretention: 3600\n" + steps,
			problem{line: 3, field: "retention", msg: []string{"give a unit"}}},
		{"a mapping", "name: a\nretention: {days: 3}\n" + steps,
			problem{line: 2, field: "retention", msg: []string{"got a mapping"}}},
		{"too long", "name: a\nretention: 40000d\n" + steps,
			problem{line: 2, field: "retention", msg: []string{"at most 36500d"}}},
		{"misspelt", "name: a\nretentoin: 7d\n" + steps,
			problem{line: 2, field: "retentoin", msg: []string{`did you mean "retention"?`}}},
		{"shorter than a catch_up schedule's ticks", "name: a\nretention: 1h\nretention_failed: 2d\n" + steps +
			"schedules:\n  - {name: nightly, cron: '30 2 * * *', missed: catch_up}\n",
			problem{line: 2, field: "retention", msg: []string{`1h is shorter than the 24h0m0s between two ticks of catch_up schedule "nightly"`}}},
		{"shorter than the deduplication window", "name: a\nidempotency_window_seconds: 7200\nretention: 1h\n" + steps,
			problem{line: 3, field: "retention", msg: []string{"shorter than idempotency_window_seconds (7200 s)"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tm, errs := Parse("t.yml", []byte(tc.yaml), "")
			require.Nil(t, tm)
			requireProblems(t, "t.yml", errs, tc.want)
		})
	}
}

func TestFormatRetention(t *testing.T) {
	for secs, want := range map[int64]string{RetentionForever: "forever", 90: "1m30s", 7200: "2h", 5400: "90m",
		7 * 86400: "7d", 36 * 3600: "36h"} {
		require.Equal(t, want, FormatRetention(secs))
		if secs != RetentionForever {
			back, err := ParseRetention(want)
			require.NoError(t, err)
			require.Equal(t, secs, back, "%s reads back", want)
		}
	}
}
