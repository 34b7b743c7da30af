package tasker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tasker-systems/tasker/internal/schedule"
	"github.com/tasker-systems/tasker/internal/template"
)

// ScheduleNextRuns is how many upcoming ticks Client.Schedules lists.
const ScheduleNextRuns = 3

// ScheduleInfo describes one cron schedule of a loaded template (the
// highest version of each template; older versions' schedules do not run).
type ScheduleInfo struct {
	// Namespace, Template and Version name the template whose tasks the
	// schedule creates.
	Namespace string `json:"namespace"`
	Template  string `json:"template"`
	Version   string `json:"version"`
	// Name is the schedule's name in the template.
	Name string `json:"name"`
	// Cron is the expression, TimeZone the IANA zone it is read in.
	Cron     string `json:"cron"`
	TimeZone string `json:"time_zone"`
	// Missed is the missed-tick policy: "skip" or "catch_up".
	Missed string `json:"missed"`
	// Enabled is false for a schedule declared with enabled: false (it
	// creates nothing).
	Enabled bool `json:"enabled"`
	// Context is the task context of every tick.
	Context json.RawMessage `json:"context"`
	// NextRuns are the next ScheduleNextRuns ticks after now, in UTC
	// (empty when disabled or when the expression has no future tick).
	NextRuns []time.Time `json:"next_runs"`
	// LastTick is the latest tick that has a task (nil when none is
	// known), LastTaskID that task. A Run loop of this client knows the
	// ticks it created; otherwise the template's most recent tasks in the
	// database are read.
	LastTick   *time.Time `json:"last_tick,omitempty"`
	LastTaskID int64      `json:"last_task_id,omitempty"`
	// Running is true when a Run loop of this client evaluates the
	// schedule.
	Running bool `json:"running"`
}

// Schedules lists the cron schedules of the highest version of every
// loaded template (by namespace and template name, each template's in
// declaration order), with their next runs and the last tick that has a
// task.
func (c *Client) Schedules(ctx context.Context) ([]*ScheduleInfo, error) {
	var states map[string]schedule.State
	if s := c.engine.Scheduler(); s != nil {
		states = s.States()
	}
	now := time.Now()
	var out []*ScheduleInfo
	list := c.engine.Templates().List()
	for i, t := range list {
		if i+1 < len(list) && list[i+1].Namespace == t.Namespace && list[i+1].Name == t.Name {
			continue // a newer version follows
		}
		for _, s := range t.Schedules {
			info := &ScheduleInfo{Namespace: t.Namespace, Template: t.Name, Version: t.Version, Name: s.Name,
				Cron: s.Cron, TimeZone: s.TimeZone, Missed: string(s.Missed), Enabled: s.Enabled, Context: s.Context,
				NextRuns: []time.Time{}}
			if s.Enabled {
				info.NextRuns = nextRuns(s, now)
			}
			ref := schedule.Ref{Template: t, Schedule: s}
			st, running := states[ref.ID()]
			info.Running = running
			if running && !st.Last.IsZero() {
				last := st.Last
				info.LastTick, info.LastTaskID = &last, st.LastTaskID
			} else {
				last, id, found, err := c.engine.ScheduleHistory(ctx, t.Namespace, t.Name, s.Name)
				if err != nil {
					return nil, fmt.Errorf("schedules: %w", err)
				}
				if found {
					info.LastTick, info.LastTaskID = &last, id
				}
			}
			out = append(out, info)
		}
	}
	return out, nil
}

// nextRuns returns the next ScheduleNextRuns ticks of s after now.
func nextRuns(s *template.Schedule, now time.Time) []time.Time {
	out := make([]time.Time, 0, ScheduleNextRuns)
	for t := now; len(out) < ScheduleNextRuns; {
		if t = s.Next(t); t.IsZero() {
			break
		}
		out = append(out, t)
	}
	return out
}
