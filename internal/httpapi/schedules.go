package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/tasker-systems/tasker"
)

// scheduleDoc is one cron schedule as the protocol shows it (GET
// /v1/schedules and the RPC method "schedules"): the fields of
// tasker.ScheduleInfo (next_runs in UTC) and next_runs_local, the same
// instants in the schedule's zone.
type scheduleDoc struct {
	*tasker.ScheduleInfo
	NextRunsLocal []string `json:"next_runs_local"`
}

func newScheduleDoc(s *tasker.ScheduleInfo) scheduleDoc {
	d := scheduleDoc{ScheduleInfo: s, NextRunsLocal: make([]string, 0, len(s.NextRuns))}
	loc, err := time.LoadLocation(s.TimeZone)
	if err != nil { // validated at load; keep UTC if the zone vanished
		loc = time.UTC
	}
	for _, t := range s.NextRuns {
		d.NextRunsLocal = append(d.NextRunsLocal, t.In(loc).Format(time.RFC3339))
	}
	return d
}

// scheduleDocs lists every schedule of c.
func scheduleDocs(ctx context.Context, c *tasker.Client) (map[string][]scheduleDoc, error) {
	list, err := c.Schedules(ctx)
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	docs := make([]scheduleDoc, 0, len(list))
	for _, s := range list {
		docs = append(docs, newScheduleDoc(s))
	}
	return map[string][]scheduleDoc{"schedules": docs}, nil
}

func (s *server) listSchedules(w http.ResponseWriter, r *http.Request) {
	if _, err := parseQuery(r, nil); err != nil {
		s.fail(w, r, err)
		return
	}
	docs, err := scheduleDocs(r.Context(), s.c)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, docs)
}

// schedules is the RPC method "schedules": the same document as GET
// /v1/schedules.
func (d *Dispatcher) schedules(ctx context.Context, params []byte) (any, error) {
	if err := decodeParams(params, &struct{}{}); err != nil {
		return nil, err
	}
	return scheduleDocs(ctx, d.c)
}
