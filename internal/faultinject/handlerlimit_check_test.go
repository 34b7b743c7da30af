package faultinject_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/faultinject"
)

// CheckHandlerLimit catches overlapping attempts over the limit, counts an
// attempt without an end until its process died, and does not count an
// attempt ending at the instant another starts.
func TestCheckHandlerLimit(t *testing.T) {
	at := func(ms int) int64 { return time.Unix(100, 0).Add(time.Duration(ms) * time.Millisecond).UnixNano() }
	rec := func(ev string, task int64, owner string, ms int) faultinject.Record {
		return faultinject.Record{Ev: ev, Task: task, Step: "s", Attempt: 1, Owner: owner, T: at(ms)}
	}
	within := []faultinject.Record{
		rec("start", 1, "a", 0), rec("start", 2, "a", 10), rec("end", 1, "a", 50),
		rec("start", 3, "b", 50), // starts as 1 ends: not an overlap
		rec("end", 2, "a", 60), rec("end", 3, "b", 70),
	}
	require.Empty(t, faultinject.CheckHandlerLimit(2, within, nil, nil))
	require.Len(t, faultinject.CheckHandlerLimit(1, within, nil, nil), 2)

	// A killed process's attempt has no end: it runs until the process died.
	killed := []faultinject.Record{
		rec("start", 1, "dead", 0), rec("start", 2, "a", 10), rec("end", 2, "a", 20),
		rec("start", 3, "b", 100), rec("end", 3, "b", 110),
	}
	deaths := map[string]time.Time{"dead": time.Unix(0, at(50))}
	require.Empty(t, faultinject.CheckHandlerLimit(2, killed, deaths, nil))
	require.Len(t, faultinject.CheckHandlerLimit(1, killed, deaths, nil), 1, "task 2 overlaps the dead attempt")
	require.Len(t, faultinject.CheckHandlerLimit(1, killed, nil, nil), 2, "unknown death: the attempt never ends")
	// Only the class's records count.
	require.Empty(t, faultinject.CheckHandlerLimit(1, killed, nil, func(r faultinject.Record) bool { return r.Task == 3 }))
}
