package faultinject

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// CheckRateLimit finds too many starts in a window and a start during a
// Retry-After block, and nothing in a clean run.
func TestCheckRateLimit(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(sec float64) time.Time { return base.Add(time.Duration(sec * float64(time.Second))) }
	spec := RateLimitSpec{Name: "lim", Rate: 2, Burst: 2, Slack: 10 * time.Millisecond}
	// A burst of 2, then one every 0.5 s.
	clean := []time.Time{at(0), at(0), at(0.5), at(1), at(1.5), at(2)}
	block := RetryAfterBlock{TaskID: 7, Told: at(2.1), Recorded: at(2.2), For: time.Second}
	for _, tc := range []struct {
		name   string
		starts []time.Time
		blocks []RetryAfterBlock
		want   string
	}{
		{"clean", clean, nil, ""},
		{"clean with a block", append(clean, at(3.2)), []RetryAfterBlock{block}, ""},
		{"burst too big", []time.Time{at(0), at(0), at(0)}, nil, "1 windows exceed the limit"},
		{"too fast", []time.Time{at(0), at(0), at(0.2), at(0.4)}, nil, "exceed the limit"},
		{"start during a block", append(clean, at(2.5)), []RetryAfterBlock{block}, "after task 7's Retry-After"},
		// A start between the handler being told and the failure being
		// recorded may have taken its token before the block: allowed.
		{"start before the record", append(clean[:5:5], at(2.15)), []RetryAfterBlock{block}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CheckRateLimit(spec, tc.starts, tc.blocks)
			if tc.want == "" {
				require.Empty(t, got)
				return
			}
			require.NotEmpty(t, got)
			require.True(t, strings.Contains(strings.Join(got, "\n"), tc.want), "want %q in %v", tc.want, got)
		})
	}
}
