package cli

import (
	"encoding/json"
	"time"

	"github.com/tasker-systems/tasker"
)

// Report is the JSON document `tasker run --json` prints: the task's final
// state and one entry per step.
type Report struct {
	TaskID    int64  `json:"task_id"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Version   string `json:"version"`
	Status    string `json:"status"`
	// DurationMS runs from the task's creation to its completion (or now).
	DurationMS int64        `json:"duration_ms"`
	Steps      []StepReport `json:"steps"`
}

// StepReport is one step of a Report.
type StepReport struct {
	Name        string          `json:"name"`
	Status      string          `json:"status"`
	Attempts    int             `json:"attempts"`
	MaxAttempts int             `json:"max_attempts"`
	Results     json.RawMessage `json:"results"`
	// LastError is the message of the last failed attempt (null when the
	// step has no error on record).
	LastError *string `json:"last_error"`
	// DurationMS runs from the step's first attempt to its completion, so it
	// includes retry delays; 0 for a step that never ran.
	DurationMS int64 `json:"duration_ms"`
}

// stepTimes holds when each step (by id) first started, from the audit trail.
type stepTimes map[int64]time.Time

// firstStarts reads the first move to in_progress of every step.
func firstStarts(trs []*tasker.Transition) stepTimes {
	out := stepTimes{}
	for _, tr := range trs {
		if tr.StepID == 0 || tr.ToState != string(tasker.StepState("in_progress")) {
			continue
		}
		if t, ok := out[tr.StepID]; !ok || tr.CreatedAt.Before(t) {
			out[tr.StepID] = tr.CreatedAt
		}
	}
	return out
}

// stepDuration is how long a step has been running since its first
// attempt: to its completion, or to now while it is unfinished. ok is false
// for a step that never started.
func stepDuration(st *tasker.Step, starts stepTimes, now time.Time) (time.Duration, bool) {
	start, ok := starts[st.ID]
	if !ok {
		if st.LastAttemptedAt == nil {
			return 0, false
		}
		start = *st.LastAttemptedAt
	}
	end := now
	if st.CompletedAt != nil {
		end = *st.CompletedAt
	}
	return max(end.Sub(start), 0), true
}

// taskDuration runs from the task's creation to its completion or now.
func taskDuration(t *tasker.Task, now time.Time) time.Duration {
	end := now
	if t.CompletedAt != nil {
		end = *t.CompletedAt
	}
	return max(end.Sub(t.CreatedAt), 0)
}

// errorMessage extracts the message of a step's stored error document.
func errorMessage(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", false
	}
	var doc struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil || doc.Message == "" {
		return string(raw), true
	}
	return doc.Message, true
}

// buildReport turns a task, its steps and its audit trail into a Report.
func buildReport(d *tasker.TaskDetail, starts stepTimes, now time.Time) *Report {
	r := &Report{
		TaskID: d.ID, Namespace: d.Namespace, Name: d.Name, Version: d.Version, Status: string(d.State),
		DurationMS: taskDuration(d.Task, now).Milliseconds(), Steps: make([]StepReport, 0, len(d.Steps)),
	}
	for _, st := range d.Steps {
		sr := StepReport{Name: st.Name, Status: string(st.State), Attempts: st.Attempts, MaxAttempts: st.MaxAttempts}
		if len(st.Results) > 0 {
			sr.Results = st.Results
		}
		if msg, ok := errorMessage(st.Error); ok {
			sr.LastError = &msg
		}
		if dur, ok := stepDuration(st, starts, now); ok {
			sr.DurationMS = dur.Milliseconds()
		}
		r.Steps = append(r.Steps, sr)
	}
	return r
}
