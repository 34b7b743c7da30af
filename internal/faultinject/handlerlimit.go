package faultinject

import (
	"fmt"
	"slices"
	"time"
)

// CheckHandlerLimit checks the promise of a handler-class limit from the
// handler log: the attempts of the class (the records of steps for which
// class says true; nil: every record) ran at most limit at once. An attempt
// runs from its start record to its end record; one without an end record
// (its process was SIGKILLed) runs until its owner's process was seen dead
// (deaths[owner]), or to the end of time when that is unknown. An attempt
// ending at the instant another starts does not overlap it. It returns the
// violations (at most 5 listed, then the peak), nil when none.
func CheckHandlerLimit(limit int, recs []Record, deaths map[string]time.Time, class func(Record) bool) []string {
	type attempt struct {
		task    int64
		step    string
		attempt int
		owner   string
	}
	type edge struct {
		at    time.Time
		delta int
		a     attempt
	}
	open := map[attempt]time.Time{}
	var edges []edge
	for _, r := range recs {
		if (r.Ev != RecStart && r.Ev != RecEnd) || (class != nil && !class(r)) {
			continue
		}
		a := attempt{r.Task, r.Step, r.Attempt, r.Owner}
		switch r.Ev {
		case RecStart:
			open[a] = r.Time()
			edges = append(edges, edge{r.Time(), +1, a})
		case RecEnd:
			if _, ok := open[a]; ok {
				delete(open, a)
				edges = append(edges, edge{r.Time(), -1, a})
			}
		}
	}
	for a := range open {
		if d, ok := deaths[a.owner]; ok {
			edges = append(edges, edge{d, -1, a})
		}
	}
	slices.SortFunc(edges, func(x, y edge) int {
		if c := x.at.Compare(y.at); c != 0 {
			return c
		}
		return x.delta - y.delta // ends before starts at one instant
	})
	var out []string
	depth, peak := 0, 0
	var running []attempt
	for _, e := range edges {
		depth += e.delta
		if e.delta > 0 {
			running = append(running, e.a)
		} else {
			running = slices.DeleteFunc(running, func(x attempt) bool { return x == e.a })
		}
		peak = max(peak, depth)
		if depth > limit && len(out) < 5 {
			names := make([]string, len(running))
			for i, x := range running {
				names[i] = fmt.Sprintf("task %d %s#%d (%s)", x.task, x.step, x.attempt, x.owner)
			}
			out = append(out, fmt.Sprintf("%d attempts running at %s, over the limit of %d: %v", depth, stamp(e.at), limit, names))
		}
	}
	if peak > limit && len(out) == 5 {
		out = append(out, fmt.Sprintf("peak %d running (limit %d); first 5 violations listed", peak, limit))
	}
	return out
}
