package tasker

import (
	"encoding/json"
	"time"

	"github.com/tasker-systems/tasker/internal/backoff"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/taskertype"
)

// Types shared with the engine, defined in the public package taskertype and
// re-exported here so that users need one import. Every type the API returns
// or takes is either one of these or defined in this package.
type (
	// Task is one run of a task template.
	Task = taskertype.Task
	// Step is one workflow step of a task.
	Step = taskertype.Step
	// TaskState is a task's lifecycle state.
	TaskState = taskertype.TaskState
	// StepState is a step's lifecycle state.
	StepState = taskertype.StepState
	// Transition is one row of the audit trail.
	Transition = taskertype.Transition
	// StepReadiness explains whether a step can run and why.
	StepReadiness = taskertype.StepReadiness
	// StepContext is what a step handler receives.
	StepContext = taskertype.StepContext
	// StepHandler runs one attempt of a step.
	StepHandler = taskertype.StepHandler
	// StepHandlerFunc adapts a function to StepHandler.
	StepHandlerFunc = taskertype.StepHandlerFunc
	// Event is a lifecycle event.
	Event = taskertype.Event
	// EventKind names a lifecycle event.
	EventKind = taskertype.EventKind
	// TaskRequest asks for a new task.
	TaskRequest = taskertype.TaskRequest
	// HandleResult is the orchestration result of one Handle call.
	HandleResult = taskertype.HandleResult
	// Action is the TaskFinalizer's decision, HandleResult.Outcome.
	Action = taskertype.Action
	// Actor names who performs a manual operation and why.
	Actor = taskertype.Actor
)

// Task states (re-exported from taskertype; drawn in docs/state_machine.md).
const (
	TaskStatePending          = taskertype.TaskStatePending
	TaskStateInProgress       = taskertype.TaskStateInProgress
	TaskStateWaitingForRetry  = taskertype.TaskStateWaitingForRetry
	TaskStateBlocked          = taskertype.TaskStateBlocked
	TaskStateComplete         = taskertype.TaskStateComplete
	TaskStateError            = taskertype.TaskStateError
	TaskStateCancelled        = taskertype.TaskStateCancelled
	TaskStateResolvedManually = taskertype.TaskStateResolvedManually
)

// Step states (re-exported from taskertype; drawn in docs/state_machine.md).
const (
	StepStatePending          = taskertype.StepStatePending
	StepStateInProgress       = taskertype.StepStateInProgress
	StepStateWaitingForRetry  = taskertype.StepStateWaitingForRetry
	StepStateComplete         = taskertype.StepStateComplete
	StepStateError            = taskertype.StepStateError
	StepStateCancelled        = taskertype.StepStateCancelled
	StepStateResolvedManually = taskertype.StepStateResolvedManually
	StepStateSkipped          = taskertype.StepStateSkipped
)

// TaskStates returns every task state, in lifecycle order (a new slice on
// each call).
func TaskStates() []TaskState { return taskertype.TaskStates() }

// StepStates returns every step state, in lifecycle order (a new slice on
// each call).
func StepStates() []StepState { return taskertype.StepStates() }

// Finalizer decisions: the values of HandleResult.Outcome (re-exported from
// taskertype, where each is described).
const (
	ActionFail      = taskertype.ActionFail
	ActionContinue  = taskertype.ActionContinue
	ActionElsewhere = taskertype.ActionElsewhere
	ActionWait      = taskertype.ActionWait
	ActionComplete  = taskertype.ActionComplete
	ActionBlock     = taskertype.ActionBlock
	ActionYield     = taskertype.ActionYield
	ActionNone      = taskertype.ActionNone
)

// BackoffConfig configures retry delays (see docs/architecture.md). Zero
// fields take their defaults, except as noted.
type BackoffConfig struct {
	// Base is the delay after the first failed attempt. Defaults to 1 s.
	Base time.Duration
	// Multiplier is the growth factor per further attempt, at least 1.
	// Defaults to 2.
	Multiplier float64
	// Max caps computed delays. Defaults to 5 min.
	Max time.Duration
	// Min is the floor for every delay, server-requested ones included.
	// Defaults to 1 s.
	Min time.Duration
	// Jitter, in [0, 1], is the largest fraction of a computed delay removed
	// at random. Defaults to 0.2 (0 cannot be expressed: it means 0.2).
	// Jitter only shortens a delay.
	Jitter float64
	// MaxServerDelay caps server-requested delays (Retry-After). Defaults to
	// 1 h.
	MaxServerDelay time.Duration
	// PriorityStep scales delays by task priority: a priority p > 0 divides
	// the delay by 1+PriorityStep*p, a priority p < 0 multiplies it by
	// 1+PriorityStep*|p|. Defaults to 0.25.
	PriorityStep float64
}

// internal is c as the backoff package's configuration.
func (c BackoffConfig) internal() backoff.Config { return backoff.Config(c) }

// Template is a validated task template with environment overrides applied,
// as the client loaded it. It is a copy: changing it changes nothing in the
// client.
type Template struct {
	// File is the path the template was read from ("" when added from
	// memory).
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
	// task still unfinished then ends in error and its running attempts are
	// cancelled. 0 means no deadline.
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
	// IdempotencyWindowSeconds is how long a task's idempotency key
	// deduplicates, from the task's creation; 0 means for ever.
	IdempotencyWindowSeconds int `json:"idempotency_window_seconds,omitempty"`
	// Steps in template order.
	Steps []*StepTemplate `json:"step_templates"`
	// RetentionSeconds and RetentionFailedSeconds are the template's
	// retention and retention_failed: how long its tasks are kept once
	// finished (complete, cancelled, resolved manually) and once failed.
	// 0: Config.Retention / RetentionFailed; RetentionForever: for ever.
	RetentionSeconds       int64 `json:"retention_seconds,omitempty"`
	RetentionFailedSeconds int64 `json:"retention_failed_seconds,omitempty"`
	// Concurrency is the template's concurrency key (nil: none): at most
	// Limit tasks with one key in progress at once.
	Concurrency *TemplateConcurrency `json:"concurrency,omitempty"`
	// RateLimits are the rate limits the template defines, by name (shared
	// by name with every other template).
	RateLimits map[string]*TemplateRateLimit `json:"rate_limits,omitempty"`
	// Schedules create a task of this template at each tick.
	Schedules []*TemplateSchedule `json:"schedules,omitempty"`
}

// TemplateConcurrency is a template's `concurrency:` block
// (docs/flow-control.md#concurrency-keys).
type TemplateConcurrency struct {
	// Key is the key as written, with its ${context.PATH} references.
	Key string `json:"key"`
	// Limit is the most tasks with one key in progress at once.
	Limit int `json:"limit"`
	// Policy is what happens to a task over the limit: "queue",
	// "cancel_newest" or "cancel_oldest".
	Policy string `json:"policy"`
}

// TemplateRateLimit is one entry of a template's `rate_limits:`
// (docs/flow-control.md#rate-limits).
type TemplateRateLimit struct {
	// PerSecond or PerMinute (one of them is set) is the refill rate.
	PerSecond float64 `json:"per_second,omitempty"`
	PerMinute float64 `json:"per_minute,omitempty"`
	// Burst is the bucket's size.
	Burst int `json:"burst"`
}

// TemplateSchedule is one entry of a template's `schedules:`
// (docs/flow-control.md#cron-schedules).
type TemplateSchedule struct {
	// Name identifies the schedule within its template.
	Name string `json:"name"`
	// Cron is the cron expression or descriptor as written.
	Cron string `json:"cron"`
	// TimeZone is the IANA zone the expression is read in.
	TimeZone string `json:"time_zone"`
	// Context is the task context of every tick.
	Context json.RawMessage `json:"context,omitempty"`
	// Missed is the missed-tick policy: "skip" or "catch_up".
	Missed string `json:"missed"`
	// Enabled schedules create tasks.
	Enabled bool `json:"enabled"`
}

// StepFanOut is a step's `fan_out:` (docs/flow-control.md#dynamic-fan-out).
type StepFanOut struct {
	// Over names the parent whose result holds the list.
	Over string `json:"over"`
	// Path is a dot-separated path into Over's result ("" for the result).
	Path string `json:"path,omitempty"`
	// MaxItems bounds the list.
	MaxItems int `json:"max_items"`
}

// StepTemplate is one step of a Template.
type StepTemplate struct {
	// Name identifies the step within its template.
	Name string `json:"name"`
	// Description is free text.
	Description string `json:"description,omitempty"`
	// HandlerClass names the step handler: a built-in (tasker:http,
	// tasker:command, ...) or a handler the application registers.
	HandlerClass string `json:"handler_class"`
	// HandlerConfig is the step's free-form configuration, after environment
	// overrides were deep-merged. Numbers are json.Number, keeping every
	// digit the YAML wrote.
	HandlerConfig map[string]any `json:"handler_config,omitempty"`
	// DependsOn lists parent step names, in order, without duplicates.
	DependsOn []string `json:"depends_on_steps,omitempty"`
	// Retryable is default_retryable (default true).
	Retryable bool `json:"default_retryable"`
	// MaxAttempts is default_retry_limit: attempts counting the first
	// (default 3).
	MaxAttempts int `json:"default_retry_limit"`
	// TimeoutSeconds bounds one attempt; 0 means no timeout.
	TimeoutSeconds int `json:"timeout_seconds,omitempty"`
	// Skippable steps may be bypassed with TaskRequest.BypassSteps.
	Skippable bool `json:"skippable,omitempty"`
	// When is the step's condition (CEL); "" when it always runs.
	When string `json:"when,omitempty"`
	// FanOut, when set, expands the step at run time into one step per
	// item of a list (nil: an ordinary step).
	FanOut *StepFanOut `json:"fan_out,omitempty"`
	// RateLimit names the rate limit the step's handler starts under.
	RateLimit string `json:"rate_limit,omitempty"`
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

// publicTemplate copies a loaded template into the public type.
func publicTemplate(t *template.Template) *Template {
	steps := make([]*StepTemplate, len(t.Steps))
	for i, s := range t.Steps {
		c := StepTemplate{Name: s.Name, Description: s.Description, HandlerClass: s.HandlerClass,
			HandlerConfig: s.HandlerConfig, DependsOn: s.DependsOn, Retryable: s.Retryable, MaxAttempts: s.MaxAttempts,
			TimeoutSeconds: s.TimeoutSeconds, Skippable: s.Skippable, When: s.When, RateLimit: s.RateLimit, Line: s.Line}
		if s.FanOut != nil {
			c.FanOut = &StepFanOut{Over: s.FanOut.Over, Path: s.FanOut.Path, MaxItems: s.FanOut.MaxItems}
		}
		steps[i] = &c
	}
	pt := &Template{File: t.File, Name: t.Name, Namespace: t.Namespace, Version: t.Version,
		Description: t.Description, TaskHandlerClass: t.TaskHandlerClass, Schema: t.Schema,
		MaxParallelSteps: t.MaxParallelSteps, TimeoutSeconds: t.TimeoutSeconds,
		IdempotencyWindowSeconds: t.IdempotencyWindowSeconds, Steps: steps,
		RetentionSeconds: t.RetentionSeconds, RetentionFailedSeconds: t.RetentionFailedSeconds}
	if c := t.Concurrency; c != nil {
		pt.Concurrency = &TemplateConcurrency{Key: c.Key, Limit: c.Limit, Policy: c.Policy}
	}
	if len(t.RateLimits) > 0 {
		pt.RateLimits = make(map[string]*TemplateRateLimit, len(t.RateLimits))
		for name, l := range t.RateLimits {
			pt.RateLimits[name] = &TemplateRateLimit{PerSecond: l.PerSecond, PerMinute: l.PerMinute, Burst: l.Burst}
		}
	}
	for _, sc := range t.Schedules {
		pt.Schedules = append(pt.Schedules, &TemplateSchedule{Name: sc.Name, Cron: sc.Cron, TimeZone: sc.TimeZone,
			Context: sc.Context, Missed: string(sc.Missed), Enabled: sc.Enabled})
	}
	return pt
}

// Migration is one schema migration and whether it is applied.
type Migration struct {
	// Version numbers the migration (1, 2, ...).
	Version int
	// Name describes it (the file name without number and extension).
	Name string
	// Applied reports whether the database has it.
	Applied bool
	// AppliedAt is when it was applied (nil when not applied).
	AppliedAt *time.Time
}

func publicMigrations(ms []store.Migration) []Migration {
	if ms == nil {
		return nil
	}
	out := make([]Migration, len(ms))
	for i, m := range ms {
		out[i] = Migration{Version: m.Version, Name: m.Name, Applied: m.Applied, AppliedAt: m.AppliedAt}
	}
	return out
}

// QueueEntry is one durable enqueue record: a task due to be handled.
type QueueEntry struct {
	// TaskID is the task to handle.
	TaskID int64
	// Operation is why it was enqueued ("enqueue" or "reenqueue").
	Operation string
	// RunAt is when it is due.
	RunAt time.Time
	// Priority orders due records, higher first.
	Priority int
	// Attempts counts the claims of this record.
	Attempts int
	// Reason explains the enqueue.
	Reason string
	// LeaseOwner and LeaseExpiresAt name the process holding the record
	// ("" and nil when nobody does).
	LeaseOwner     string
	LeaseExpiresAt *time.Time
	// CreatedAt is when the record was written.
	CreatedAt time.Time
}

func publicQueueEntries(es []*store.QueueEntry) []*QueueEntry {
	if es == nil {
		return nil
	}
	out := make([]*QueueEntry, len(es))
	for i, e := range es {
		out[i] = &QueueEntry{TaskID: e.TaskID, Operation: e.Operation, RunAt: e.RunAt, Priority: e.Priority,
			Attempts: e.Attempts, Reason: e.Reason, LeaseOwner: e.LeaseOwner, LeaseExpiresAt: e.LeaseExpiresAt,
			CreatedAt: e.CreatedAt}
	}
	return out
}

// TaskFilter selects tasks for ListTasks. Zero values mean "any".
type TaskFilter struct {
	// States keeps tasks in one of these states.
	States []TaskState
	// Namespace and Name keep tasks of this template.
	Namespace string
	Name      string
	// CreatedAfter and CreatedBefore bound the creation time.
	CreatedAfter  *time.Time
	CreatedBefore *time.Time
	// AfterID pages: only tasks with a smaller id (newest first).
	AfterID int64
	// Limit caps the number of tasks returned (0: the store's default).
	Limit int
}

func (f *TaskFilter) internal() *store.TaskListParams {
	return &store.TaskListParams{States: f.States, Namespace: f.Namespace, Name: f.Name,
		CreatedAfter: f.CreatedAfter, CreatedBefore: f.CreatedBefore, AfterID: f.AfterID, Limit: f.Limit}
}
