package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/tasker-systems/tasker"
)

// scheduleDoc is one cron schedule as the protocol shows it (GET
// /v1/schedules and the RPC method "schedules").
type scheduleDoc struct {
	Namespace string          `json:"namespace"`
	Template  string          `json:"template"`
	Version   string          `json:"version"`
	Name      string          `json:"name"`
	Cron      string          `json:"cron"`
	TimeZone  string          `json:"time_zone"`
	Missed    string          `json:"missed"`
	Enabled   bool            `json:"enabled"`
	Context   json.RawMessage `json:"context"`
	// NextRuns are in UTC; NextRunsLocal the same instants in TimeZone.
	NextRuns      []time.Time `json:"next_runs"`
	NextRunsLocal []string    `json:"next_runs_local"`
	LastTick      *time.Time  `json:"last_tick"`
	LastTaskID    int64       `json:"last_task_id,omitempty"`
	Running       bool        `json:"running"`
}

func newScheduleDoc(s *tasker.ScheduleInfo) scheduleDoc {
	d := scheduleDoc{Namespace: s.Namespace, Template: s.Template, Version: s.Version, Name: s.Name, Cron: s.Cron,
		TimeZone: s.TimeZone, Missed: s.Missed, Enabled: s.Enabled, Context: s.Context, NextRuns: s.NextRuns,
		NextRunsLocal: make([]string, 0, len(s.NextRuns)), LastTick: s.LastTick, LastTaskID: s.LastTaskID,
		Running: s.Running}
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
