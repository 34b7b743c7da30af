package faultinject

import (
	"fmt"
	"slices"
	"time"
)

// The rate-limit workload (TestRateLimitUnderKills): tasks of one template
// whose step runs under a shared rate limit, some failing once with a
// server's Retry-After, while runner processes are killed. CheckRateLimit
// then checks the promise from the handler log and the database.

// RateLimitSpec is the limit a run checks: Rate tokens a second up to
// Burst. Slack covers the time between a token's grant and the handler's
// start record (goroutine scheduling, the log write).
type RateLimitSpec struct {
	Name  string
	Rate  float64
	Burst int
	Slack time.Duration
}

// RetryAfterBlock is one failure of a step of the limit that asked for a
// delay: Told is when its handler returned (its end record), Recorded when
// the failure was recorded (its transition, written after the engine
// blocked the limit), For the delay asked for.
type RetryAfterBlock struct {
	TaskID   int64
	Told     time.Time
	Recorded time.Time
	For      time.Duration
}

// CheckRateLimit checks the handler starts of a limit's steps (any task,
// any runner) and returns the violations (nil when none):
//
//   - in any window between two starts, at most Burst + Rate x (window +
//     Slack) started;
//   - no start after a Retry-After failure was recorded and before the
//     delay it asked for had passed since its handler was told (the engine
//     blocks the limit, before recording the failure, until at least then).
func CheckRateLimit(spec RateLimitSpec, starts []time.Time, blocks []RetryAfterBlock) []string {
	var out []string
	fail := func(format string, args ...any) { out = append(out, spec.Name+": "+fmt.Sprintf(format, args...)) }
	s := slices.Clone(starts)
	slices.SortFunc(s, func(a, b time.Time) int { return a.Compare(b) })
	worst, worstAt, worstEnd := 0.0, -1, -1
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			allowed := float64(spec.Burst) + spec.Rate*(s[j].Sub(s[i])+spec.Slack).Seconds()
			if over := float64(j-i+1) - allowed; over > 0 && over > worst {
				worst, worstAt, worstEnd = over, i, j
			}
		}
	}
	if worstAt >= 0 {
		// One violation per window start would repeat itself: report the
		// worst window and how many windows exceed the limit.
		n := 0
		for i := range s {
			for j := i + 1; j < len(s); j++ {
				if float64(j-i+1) > float64(spec.Burst)+spec.Rate*(s[j].Sub(s[i])+spec.Slack).Seconds() {
					n++
					break
				}
			}
		}
		var window []string
		for _, st := range s[worstAt : worstEnd+1] {
			window = append(window, stamp(st))
		}
		fail("%d windows exceed the limit; the worst has %.1f starts more than burst %d + %g/s allow: %v",
			n, worst, spec.Burst, spec.Rate, window)
	}
	for _, b := range blocks {
		end := b.Told.Add(b.For - clockSkew)
		for _, st := range s {
			if st.After(b.Recorded.Add(clockSkew)) && st.Before(end) {
				fail("a start at %s, after task %d's Retry-After (told %s, recorded %s) asked for %s until %s",
					stamp(st), b.TaskID, stamp(b.Told), stamp(b.Recorded), b.For, stamp(b.Told.Add(b.For)))
			}
		}
	}
	return out
}
