package faultinject

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// CheckTicks finds each kind of violation in made-up runs, and none in a
// clean one.
func TestCheckTicks(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(sec float64) time.Time { return base.Add(time.Duration(sec * float64(time.Second))) }
	ticks := func(secs ...float64) []ScheduledTask {
		var out []ScheduledTask
		for i, s := range secs {
			out = append(out, ScheduledTask{TaskID: int64(i + 1), Tick: at(s)})
		}
		return out
	}
	slack := CronSlack{Startup: time.Second, Create: time.Second}
	skip := CronSpec{Name: "skip", Interval: 2 * time.Second}
	catch := CronSpec{Name: "catch", Interval: 2 * time.Second, CatchUp: true}
	// One runner up 0-9 s, down until 15.5 s (ticks 10, 12, 14 missed), up again to 30 s.
	spans := []RunnerSpan{{Owner: "a", Up: at(-5), Down: at(9)}, {Owner: "b", Up: at(15.5), Down: at(30)}}

	for _, tc := range []struct {
		name  string
		spec  CronSpec
		tasks []ScheduledTask
		want  string // "" = no violation
	}{
		{"clean skip", skip, ticks(0, 2, 4, 6, 8, 16, 18, 20), ""},
		{"clean catch_up", catch, ticks(0, 2, 4, 6, 8, 14, 16, 18, 20), ""},
		{"duplicate", skip, ticks(0, 2, 2, 4), "tick 00:00:02.000 has 2 tasks"},
		{"off the grid", skip, ticks(0, 3), "not on the 2s grid"},
		{"missing while up", skip, ticks(0, 2, 6, 8), "tick 00:00:04.000 has no task although runner a was up"},
		{"skip created a missed tick", skip, ticks(0, 2, 4, 6, 8, 14, 16), "skip creates nothing for a missed tick"},
		{"catch_up created two missed ticks", catch, ticks(0, 2, 4, 6, 8, 12, 14, 16), "not the latest tick"},
		{"nothing", skip, nil, "no task was created"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CheckTicks(tc.spec, tc.tasks, spans, slack)
			if tc.want == "" {
				require.Empty(t, got)
				return
			}
			require.NotEmpty(t, got)
			require.True(t, strings.Contains(strings.Join(got, "\n"), tc.want), "want %q in %v", tc.want, got)
		})
	}
}
