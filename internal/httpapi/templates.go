package httpapi

import (
	"encoding/json"
	"net/http"

	"github.com/tasker-systems/tasker"
)

// templateDoc is a task template as the protocol shows it. The template's
// file path on the server is deliberately left out.
type templateDoc struct {
	Namespace        string `json:"namespace"`
	Name             string `json:"name"`
	Version          string `json:"version"`
	Description      string `json:"description"`
	TaskHandlerClass string `json:"task_handler_class,omitempty"`
	MaxParallelSteps int    `json:"max_parallel_steps"`
	TimeoutSeconds   int    `json:"timeout_seconds,omitempty"`
	// IdempotencyWindowSeconds: how long an idempotency key deduplicates (0: for ever).
	IdempotencyWindowSeconds int               `json:"idempotency_window_seconds,omitempty"`
	ContextSchema            json.RawMessage   `json:"context_schema,omitempty"`
	Steps                    []stepTemplateDoc `json:"steps"`
	// RetentionSeconds, RetentionFailedSeconds: the template's retention
	// and retention_failed (0: the server's default; -1: for ever).
	RetentionSeconds       int64 `json:"retention_seconds,omitempty"`
	RetentionFailedSeconds int64 `json:"retention_failed_seconds,omitempty"`
	// Concurrency, RateLimits and Schedules: the template's flow control
	// (docs/flow-control.md), omitted when it declares none.
	Concurrency *tasker.TemplateConcurrency          `json:"concurrency,omitempty"`
	RateLimits  map[string]*tasker.TemplateRateLimit `json:"rate_limits,omitempty"`
	Schedules   []*tasker.TemplateSchedule           `json:"schedules,omitempty"`
}

// stepTemplateDoc is one step of a templateDoc; the field names match the
// step documents of a task.
type stepTemplateDoc struct {
	Name           string         `json:"name"`
	Description    string         `json:"description,omitempty"`
	HandlerClass   string         `json:"handler_class"`
	HandlerConfig  map[string]any `json:"handler_config,omitempty"`
	DependsOn      []string       `json:"depends_on"`
	Retryable      bool           `json:"retryable"`
	MaxAttempts    int            `json:"max_attempts"`
	TimeoutSeconds int            `json:"timeout_seconds"`
	Skippable      bool           `json:"skippable"`
	// When, FanOut and RateLimit: the step's condition, run-time fan-out
	// and rate limit, omitted when it has none.
	When      string             `json:"when,omitempty"`
	FanOut    *tasker.StepFanOut `json:"fan_out,omitempty"`
	RateLimit string             `json:"rate_limit,omitempty"`
}

func newTemplateDoc(t *tasker.Template) templateDoc {
	d := templateDoc{Namespace: t.Namespace, Name: t.Name, Version: t.Version, Description: t.Description,
		TaskHandlerClass: t.TaskHandlerClass, MaxParallelSteps: t.MaxParallelSteps, TimeoutSeconds: t.TimeoutSeconds,
		IdempotencyWindowSeconds: t.IdempotencyWindowSeconds,
		RetentionSeconds:         t.RetentionSeconds, RetentionFailedSeconds: t.RetentionFailedSeconds,
		ContextSchema: t.Schema, Concurrency: t.Concurrency, RateLimits: t.RateLimits, Schedules: t.Schedules,
		Steps: make([]stepTemplateDoc, 0, len(t.Steps))}
	for _, st := range t.Steps {
		deps := st.DependsOn
		if deps == nil {
			deps = []string{}
		}
		d.Steps = append(d.Steps, stepTemplateDoc{Name: st.Name, Description: st.Description,
			HandlerClass: st.HandlerClass, HandlerConfig: st.HandlerConfig, DependsOn: deps, Retryable: st.Retryable,
			MaxAttempts: st.MaxAttempts, TimeoutSeconds: st.TimeoutSeconds, Skippable: st.Skippable,
			When: st.When, FanOut: st.FanOut, RateLimit: st.RateLimit})
	}
	return d
}

func (s *server) listTemplates(w http.ResponseWriter, r *http.Request) {
	if _, err := parseQuery(r, nil); err != nil {
		s.fail(w, r, err)
		return
	}
	list := s.c.Templates()
	docs := make([]templateDoc, 0, len(list))
	for _, t := range list {
		docs = append(docs, newTemplateDoc(t))
	}
	s.writeJSON(w, r, http.StatusOK, map[string][]templateDoc{"templates": docs})
}

func (s *server) getTemplate(w http.ResponseWriter, r *http.Request) {
	q, perr := parseQuery(r, []string{"version"})
	if perr != nil {
		s.fail(w, r, perr)
		return
	}
	t, err := s.c.Template(r.PathValue("namespace"), r.PathValue("name"), q.get("version"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, map[string]templateDoc{"template": newTemplateDoc(t)})
}
