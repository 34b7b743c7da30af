// Package template reads task templates (YAML) from a directory, validates
// them, and serves lookups by namespace/name/version: the reference design's
// TaskHandlerRegistry. Every problem is reported as a
// *taskertype.TemplateError naming the file, line, field and step; a load
// reports the problems of every file, not just the first.
package template

import "encoding/json"

// Defaults applied to omitted fields.
const (
	NamespaceDefault        = "default"
	VersionDefault          = "0.1.0"
	RetryLimitDefault       = 3 // max attempts, counting the first
	MaxParallelStepsDefault = 10
	DirDefault              = "config/tasker/tasks"
)

// Template is one validated task template with environment overrides applied.
type Template struct {
	// File is the path the template was read from ("" when built in memory).
	File string `json:"file,omitempty"`
	// Name, Namespace and Version identify the template. Version is semver.
	Name      string `json:"name"`
	Namespace string `json:"namespace_name"`
	Version   string `json:"version"`
	// Description is free text.
	Description string `json:"description,omitempty"`
	// TaskHandlerClass names the Ruby (or Go) task handler class, optional.
	TaskHandlerClass string `json:"task_handler_class,omitempty"`
	// Schema is the JSON Schema for the task context (nil when none).
	Schema json.RawMessage `json:"schema,omitempty"`
	// MaxParallelSteps bounds how many steps of one task run at once.
	MaxParallelSteps int `json:"max_parallel_steps"`
	// Steps in template order.
	Steps []*StepTemplate `json:"step_templates"`
}

// StepTemplate is one step of a template.
type StepTemplate struct {
	Name          string         `json:"name"`
	Description   string         `json:"description,omitempty"`
	HandlerClass  string         `json:"handler_class"`
	HandlerConfig map[string]any `json:"handler_config,omitempty"`
	// DependsOn lists parent step names (depends_on_step and depends_on_steps merged, in order, no duplicates).
	DependsOn []string `json:"depends_on_steps,omitempty"`
	// Retryable is default_retryable (default true).
	Retryable bool `json:"default_retryable"`
	// MaxAttempts is default_retry_limit: attempts counting the first (default RetryLimitDefault, at least 1).
	MaxAttempts int `json:"default_retry_limit"`
	// TimeoutSeconds bounds one attempt; 0 means no timeout.
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
	// Skippable steps may be bypassed with a task request's bypass_steps.
	Skippable bool `json:"skippable,omitempty"`
	// Line is the YAML line of the step's entry (0 when unknown).
	Line int `json:"-"`
}

// Key returns "namespace/name@version".
func (t *Template) Key() string { return t.Namespace + "/" + t.Name + "@" + t.Version }

// Step returns the step template with the given name, or nil.
func (t *Template) Step(name string) *StepTemplate {
	for _, s := range t.Steps {
		if s.Name == name {
			return s
		}
	}
	return nil
}
