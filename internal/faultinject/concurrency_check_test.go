package faultinject

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// CheckConcurrency finds a key over its limit in made-up audits, and
// nothing in clean ones.
func TestCheckConcurrency(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(sec float64) time.Time { return base.Add(time.Duration(sec * float64(time.Second))) }
	// task runs [from, to) with a retry wait in the middle; to < 0: never ends.
	task := func(id int64, key string, from, to float64) KeyedTask {
		trs := []StateChange{{"pending", at(from - 1)}, {"in_progress", at(from)}, {"waiting_for_retry", at((from + to) / 2)},
			{"in_progress", at((from+to)/2 + 0.01)}}
		if to >= 0 {
			trs = append(trs, StateChange{"complete", at(to)})
		}
		return KeyedTask{TaskID: id, Key: key, Transitions: trs}
	}
	limits := map[string]int{"a": 1, "b": 2}
	for _, tc := range []struct {
		name  string
		tasks []KeyedTask
		want  string // "" = no violation
	}{
		{"one after another", []KeyedTask{task(1, "a", 0, 1), task(2, "a", 1, 2), task(3, "a", 2, -1)}, ""},
		{"two keys apart", []KeyedTask{task(1, "a", 0, 2), task(2, "b", 0, 2), task(3, "b", 1, 3)}, ""},
		{"overlap", []KeyedTask{task(1, "a", 0, 2), task(2, "a", 1.5, 3)}, "key a: 2 tasks running at 00:00:01.500, over the limit of 1: [1 2]"},
		{"an unfinished task holds its slot", []KeyedTask{task(1, "a", 0, -1), task(2, "a", 5, 6)}, "over the limit of 1"},
		{"three of b", []KeyedTask{task(1, "b", 0, 3), task(2, "b", 1, 3), task(3, "b", 2, 3)}, "key b: 3 tasks running"},
		{"cancelled before it started", []KeyedTask{task(1, "a", 0, 2),
			{TaskID: 2, Key: "a", Transitions: []StateChange{{"pending", at(0)}, {"cancelled", at(1)}}}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CheckConcurrency(limits, tc.tasks)
			if tc.want == "" {
				require.Empty(t, got)
				return
			}
			require.NotEmpty(t, got)
			require.True(t, strings.Contains(strings.Join(got, "\n"), tc.want), "want %q in %v", tc.want, got)
		})
	}
}
