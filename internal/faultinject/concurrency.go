package faultinject

import (
	"fmt"
	"slices"
	"time"
)

// KeyedTask is one task of a concurrency-key workload, read from the
// database: its key and its transitions audit, in order.
type KeyedTask struct {
	TaskID      int64
	Key         string
	Transitions []StateChange
}

// StateChange is one row of a task's transitions audit.
type StateChange struct {
	To string
	At time.Time
}

// runningState says whether a task in state holds a slot of its key:
// started and not finished.
func runningState(state string) bool { return state == "in_progress" || state == "waiting_for_retry" }

// CheckConcurrency checks the promise of concurrency keys from the
// transitions audit: for every key, the intervals during which its tasks
// were running (from the transition into in_progress or waiting_for_retry
// to the transition out of both) never overlap more than limits[key] deep.
// An interval still open at the end (a task not finished) runs to the end
// of time. An interval ending at the instant another starts does not
// overlap it (a cancel_oldest replacement stamps both with one time). It
// returns the violations, nil when none.
func CheckConcurrency(limits map[string]int, tasks []KeyedTask) []string {
	type edge struct {
		at    time.Time
		delta int // +1 start, -1 end
		task  int64
	}
	byKey := map[string][]edge{}
	for _, t := range tasks {
		running := false
		for _, tr := range t.Transitions {
			switch now := runningState(tr.To); {
			case now && !running:
				byKey[t.Key] = append(byKey[t.Key], edge{tr.At, +1, t.TaskID})
			case !now && running:
				byKey[t.Key] = append(byKey[t.Key], edge{tr.At, -1, t.TaskID})
			}
			running = runningState(tr.To)
		}
	}
	keys := make([]string, 0, len(byKey))
	for k := range byKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []string
	for _, k := range keys {
		edges := byKey[k]
		// Ends before starts at one instant (half-open intervals).
		slices.SortFunc(edges, func(a, b edge) int {
			if c := a.at.Compare(b.at); c != 0 {
				return c
			}
			return a.delta - b.delta
		})
		limit, ok := limits[k]
		if !ok {
			out = append(out, fmt.Sprintf("key %s: no limit given", k))
			continue
		}
		depth, peak := 0, 0
		var running []int64
		reported := 0
		for _, e := range edges {
			depth += e.delta
			if e.delta > 0 {
				running = append(running, e.task)
			} else {
				running = slices.DeleteFunc(running, func(id int64) bool { return id == e.task })
			}
			peak = max(peak, depth)
			if depth > limit && reported < 5 {
				reported++
				out = append(out, fmt.Sprintf("key %s: %d tasks running at %s, over the limit of %d: %v",
					k, depth, stamp(e.at), limit, slices.Clone(running)))
			}
		}
		if peak > limit && reported == 5 {
			out = append(out, fmt.Sprintf("key %s: peak %d running (limit %d); first 5 violations listed", k, peak, limit))
		}
	}
	return out
}
