// Package template reads task templates (YAML) from a directory, validates
// them, and serves lookups by namespace/name/version: the reference design's
// TaskHandlerRegistry. Every problem is reported as a
// *taskertype.TemplateError naming the file, line, field and step; a load
// reports the problems of every file, not just the first.
//
// # Template files
//
// Each *.yml or *.yaml file holds exactly one template (one YAML document).
// The fields are described on [Template] and [StepTemplate]; the YAML keys
// are the json tags of those structs, plus depends_on_step (a single parent,
// merged before depends_on_steps) and environments (per-environment step
// overrides, see [Parse]). schedules lists cron schedules (see [Schedule]:
// name, cron, time_zone, context, missed, enabled); each is checked at load,
// its context against the template's schema.
//
// # Validation choices
//
//   - Unknown fields are rejected, not ignored: a misspelled key such as
//     "depends_on_stpes" would otherwise silently drop a dependency. The error
//     suggests the closest known field when one is within edit distance 2
//     (1 for words of up to three characters); unknown parent steps and
//     built-in handler names get the same kind of suggestion.
//   - Values are typed strictly: "5" (a string) is not accepted where an
//     integer is expected, and yes/no are strings, not booleans (YAML 1.2).
//     A null value (a key with nothing after it) counts as omitted. The
//     version is the exception: it is read as text, so 1.0 and 1 are reported
//     as bad versions rather than as wrong types.
//   - Names (name, namespace_name, step names, environment names) are
//     identifiers: letters, digits, '_', '.' and '-', starting with a letter
//     or digit, at most 128 bytes.
//   - Versions are strict semantic versions (MAJOR.MINOR.PATCH with optional
//     -prerelease and +build); "v1.2.0" and "1.2" are rejected.
//   - Integer fields are bounded by 2147483647 because the store keeps them in
//     32-bit integer columns.
//   - YAML merge keys (<<) and anchors/aliases are supported.
//   - Every environment's overrides are checked (types, unknown fields,
//     unknown steps) whatever environment is selected, so a typo in the
//     production block fails a load in development too. Dependency checks
//     (unknown parents, cycles) run on the merged result of the selected
//     environment only.
//   - The context schema is compiled with JSON Schema draft 2020-12 as the
//     default draft, format assertions on, and no loading of external
//     references ($ref to files or URLs is rejected; references inside the
//     schema work). A $ref cycle that stays on the same value is rejected
//     at load, not left to fail every task.
//   - Numbers in the schema and in handler_config keep every digit written
//     (json.Number), so big integers and values such as 1e400 survive.
//   - Every template is bounded (file size, steps, nesting depth, alias
//     expansion, number size, schema applications per value): see
//     [MaxFileBytes] and the other limits, checked before the work they
//     bound.
package template

import (
	"encoding/json"

	"github.com/Masterminds/semver/v3"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/tasker-systems/tasker/internal/condition"
)

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
	// TimeoutSeconds is the task's deadline, counted from its creation: a
	// task still unfinished then ends in error (event expire) and its
	// running attempts are cancelled. 0 means no deadline.
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
	// IdempotencyWindowSeconds is how long a task's idempotency key
	// deduplicates, counted from the task's creation: a request with the key
	// after that creates a new task. 0 means for ever.
	IdempotencyWindowSeconds int `json:"idempotency_window_seconds,omitempty"`
	// RetentionSeconds is how long a task of this template is kept once
	// it finished complete, cancelled or resolved manually, and
	// RetentionFailedSeconds once it failed (error), before the runners
	// prune it (YAML retention and retention_failed: "forever" or a
	// duration such as 30d or 720h). 0: the engine's default;
	// RetentionForever: for ever.
	RetentionSeconds       int64 `json:"retention_seconds,omitempty"`
	RetentionFailedSeconds int64 `json:"retention_failed_seconds,omitempty"`
	// Steps in template order.
	Steps []*StepTemplate `json:"step_templates"`
	// Schedules create a task of this template at each tick of their cron
	// expressions (see Schedule).
	Schedules []*Schedule `json:"schedules,omitempty"`
	// Concurrency limits how many tasks with one key run at once (nil:
	// no limit); see Concurrency.
	Concurrency *Concurrency `json:"concurrency,omitempty"`
	// RateLimits are the named limits the template defines, shared by name
	// with every other template (see RateLimit).
	RateLimits map[string]*RateLimit `json:"rate_limits,omitempty"`
	// HandlerLimits bounds how many attempts of a handler class run at once
	// across all runners (class -> limit); a class's limit is shared by
	// every template (see Registry.HandlerLimit).
	HandlerLimits map[string]int `json:"handler_limits,omitempty"`

	// conditions maps the steps that have a `when` to it compiled.
	conditions map[string]*condition.Condition
	// fanOuts maps the steps that have a fan_out to it.
	fanOuts map[string]*FanOut
	// stepLimits maps the steps that name a rate limit to it.
	stepLimits map[string]*RateLimit
	// handlerLimitLines are the YAML lines of HandlerLimits' entries.
	handlerLimitLines map[string]int
	// schema is Schema compiled (nil when there is no schema).
	schema *jsonschema.Schema
	// semver is Version parsed.
	semver *semver.Version
	// line is the YAML line of the name field (0 when unknown).
	line int
}

// StepTemplate is one step of a template.
type StepTemplate struct {
	// Name identifies the step within its template.
	Name string `json:"name"`
	// Description is free text.
	Description string `json:"description,omitempty"`
	// HandlerClass names the step handler: one of BuiltinHandlers or a
	// handler the application registers.
	HandlerClass string `json:"handler_class"`
	// HandlerConfig is the step's free-form configuration, after environment
	// overrides were deep-merged. Values are map[string]any, []any, string,
	// bool, nil and json.Number: a number keeps every digit the YAML wrote
	// (12345678901234567890123 and 1e400 are numbers, not float64
	// approximations or strings), so it reaches the database and the
	// handler exactly.
	HandlerConfig map[string]any `json:"handler_config,omitempty"`
	// DependsOn lists parent step names (depends_on_step and depends_on_steps merged, in order, no duplicates).
	DependsOn []string `json:"depends_on_steps,omitempty"`
	// Retryable is default_retryable (default true).
	Retryable bool `json:"default_retryable"`
	// MaxAttempts is default_retry_limit: attempts counting the first (default RetryLimitDefault, at least 1).
	MaxAttempts int `json:"default_retry_limit"`
	// TimeoutSeconds bounds one attempt; 0 means no timeout.
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
	// When is the step's condition (CEL over context and its parents'
	// results): the step runs only when it holds, and is skipped otherwise.
	// Empty: always runs.
	When string `json:"when,omitempty"`
	// Condition is When compiled (nil when When is empty).
	Condition *condition.Condition `json:"-"`
	// FanOut, when set, expands the step at run time into one step per item
	// of a list its parent FanOut.Over returned (see FanOut).
	FanOut *FanOut `json:"fan_out,omitempty"`
	// RateLimit names the template's rate limit (rate_limits) the step's
	// handler starts under; empty: none.
	RateLimit string `json:"rate_limit,omitempty"`
	// Skippable steps may be bypassed with a task request's bypass_steps.
	Skippable bool `json:"skippable,omitempty"`
	// Line is the YAML line of the step's entry (0 when unknown).
	Line int `json:"-"`
}

// Key returns "namespace/name@version".
func (t *Template) Key() string { return t.Namespace + "/" + t.Name + "@" + t.Version }

// Condition returns the compiled `when` of the named step, nil when it has
// none: a map lookup, for the coordinator's per-attempt path (Step is a
// linear search).
func (t *Template) Condition(step string) *condition.Condition { return t.conditions[step] }

// Step returns the step template with the given name, or nil.
func (t *Template) Step(name string) *StepTemplate {
	for _, s := range t.Steps {
		if s.Name == name {
			return s
		}
	}
	return nil
}
