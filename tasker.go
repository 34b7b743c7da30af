package tasker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tasker-systems/tasker/internal/builtin"
	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/internal/metrics"
	"github.com/tasker-systems/tasker/internal/redact"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/store/postgres"
	"github.com/tasker-systems/tasker/internal/store/sqlite"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/internal/tracing"
	"github.com/tasker-systems/tasker/taskertype"
)

// Lifecycle event kinds (re-exported from taskertype; see docs/events.md).
const (
	EventTaskInitialized    = taskertype.EventTaskInitialized
	EventTaskEnqueue        = taskertype.EventTaskEnqueue
	EventTaskReenqueue      = taskertype.EventTaskReenqueue
	EventTaskStarted        = taskertype.EventTaskStarted
	EventTaskCompleted      = taskertype.EventTaskCompleted
	EventTaskFailed         = taskertype.EventTaskFailed
	EventTaskBlocked        = taskertype.EventTaskBlocked
	EventTaskCancelled      = taskertype.EventTaskCancelled
	EventTaskResolved       = taskertype.EventTaskResolved
	EventStepStarted        = taskertype.EventStepStarted
	EventStepCompleted      = taskertype.EventStepCompleted
	EventStepFailed         = taskertype.EventStepFailed
	EventStepRetryScheduled = taskertype.EventStepRetryScheduled
	EventStepRetried        = taskertype.EventStepRetried
	EventStepResolved       = taskertype.EventStepResolved
	EventStepCancelled      = taskertype.EventStepCancelled
	EventStepSkipped        = taskertype.EventStepSkipped
	EventStepExpanded       = taskertype.EventStepExpanded
)

// Errors re-exported from taskertype; match them with errors.Is / errors.As.
var (
	ErrNotFound          = taskertype.ErrNotFound
	ErrInvalidTransition = taskertype.ErrInvalidTransition
	ErrInvalidTemplate   = taskertype.ErrInvalidTemplate
	ErrInvalidContext    = taskertype.ErrInvalidContext
	ErrInvalidRequest    = taskertype.ErrInvalidRequest
)

// Retryable marks err as a retryable step failure; after > 0 is the delay
// the remote side asked for, which wins over the computed backoff.
func Retryable(err error, after time.Duration) error { return taskertype.Retryable(err, after) }

// Permanent marks err as a permanent step failure: no more attempts.
func Permanent(err error) error { return taskertype.Permanent(err) }

// Defaults for Config.
const (
	// SQLitePathDefault is the embedded database file used without a DatabaseURL.
	SQLitePathDefault = "tasker.db"
	// TemplatesDirDefault is where templates are read from.
	TemplatesDirDefault = "config/tasker/tasks"
	// StepLeaseDefault is Config.StepLease's default.
	StepLeaseDefault = 30 * time.Second
	// QueueLeaseDefault is Config.QueueLease's default.
	QueueLeaseDefault = 60 * time.Second
	// PollIntervalDefault is Config.PollInterval's default.
	PollIntervalDefault = time.Second
	// RescueIntervalDefault is Config.RescueInterval's default.
	RescueIntervalDefault = 10 * time.Second
	// ShutdownGraceDefault is Config.ShutdownGrace's default.
	ShutdownGraceDefault = 10 * time.Second
)

// Config configures a Client. Zero values mean the documented default.
type Config struct {
	// DatabaseURL selects the database: "postgres://..." (or "postgresql://")
	// for PostgreSQL, "sqlite:PATH" for a SQLite file. Defaults to the SQLite
	// file SQLitePathDefault in the working directory.
	DatabaseURL string
	// TemplatesDir is read recursively for *.yml / *.yaml templates. Defaults
	// to TemplatesDirDefault; a missing default directory is not an error.
	TemplatesDir string
	// Environment selects environments.<name> overrides in templates.
	// Defaults to $TASKER_ENV.
	Environment string
	// AutoMigrate applies pending migrations at Open. SQLite databases are
	// always migrated; PostgreSQL only when this is set (production schemas
	// are usually migrated by `tasker migrate up`). Defaults to off.
	AutoMigrate bool
	// EnableCommandHandler allows the built-in tasker:command handler to run
	// programs. Defaults to off.
	EnableCommandHandler bool
	// HTTPAllowedHosts, when not nil, are the only hosts the built-in
	// tasker:http handler may reach, in every step and at every redirect
	// ("api.example.com", "*.example.com", "10.0.0.5:8080", "*"); an empty,
	// non-nil list allows none. Nil: $TASKER_HTTP_ALLOWED_HOSTS
	// (comma-separated), or no process-wide list. See docs/builtins.md.
	HTTPAllowedHosts []string
	// HTTPTimeout is the deadline of a tasker:http attempt whose step sets
	// no timeout_seconds. Defaults to 30 s.
	HTTPTimeout time.Duration
	// MaxResponseBytes bounds a tasker:http response body and a
	// tasker:command's output. Defaults to 10 MiB.
	MaxResponseBytes int64
	// Backoff configures retry delays; each zero field takes its default
	// (see BackoffConfig: 1 s base, x2, 5 min cap, 20% jitter).
	Backoff BackoffConfig
	// EventEnqueue makes the TaskEnqueuer publish task.enqueue/reenqueue
	// events for an external job system instead of expecting Go runners,
	// and lets tasks be created whose handlers are not registered in Go.
	// Defaults to off: Go runners (Run) take tasks from the durable queue.
	EventEnqueue bool
	// StepLease is how long a claimed step stays held without its lease
	// being extended (the runner extends it while the handler runs; pull
	// workers call Worker.ExtendLeases). A step whose lease lapsed is
	// rescued and run again. Defaults to StepLeaseDefault (30 s).
	StepLease time.Duration
	// QueueLease is how long a claimed enqueue record stays held without
	// being extended, after which another runner may take the task.
	// Defaults to QueueLeaseDefault (60 s).
	QueueLease time.Duration
	// PollInterval is the longest a runner waits before looking for due
	// tasks when nothing woke it (a notification, a local enqueue, a timer
	// for the next due record). Defaults to PollIntervalDefault (1 s).
	PollInterval time.Duration
	// RescueInterval is how often a runner looks for steps whose lease
	// expired. Defaults to RescueIntervalDefault (10 s).
	RescueInterval time.Duration
	// ShutdownGrace is how long in-flight steps may finish after Run's or
	// Handle's context ends before they are cancelled and released.
	// Defaults to ShutdownGraceDefault (10 s).
	ShutdownGrace time.Duration
	// Owner names this process in leases and audit rows. Defaults to
	// host-pid-random.
	Owner string
	// Logger receives the client's logs. Defaults to slog.Default().
	Logger *slog.Logger
	// Metrics, when set, receives the client's Prometheus collectors
	// (tasker_* metrics: tasks, step attempts, failures, retries and
	// durations, queue depth, lease rescues, database call latency, dropped
	// events; see docs/observability.md). Open fails if they are already
	// registered there, for example by another open Client. Defaults to
	// none: no metrics are kept.
	Metrics prometheus.Registerer
	// TraceExporter, when set, receives OpenTelemetry spans: one per task
	// and one per step attempt, in the trace of the context that created
	// the task (see docs/observability.md). Close flushes it and shuts it
	// down (within 10 s), returning its error. Defaults to none: no spans
	// (a caller's trace context is still kept with the task and handed on
	// to step handlers).
	TraceExporter sdktrace.SpanExporter

	// Retention is how long a task that finished complete, cancelled or
	// resolved manually is kept before the runners delete it, when its
	// template has no retention; RetentionFailed likewise for a failed
	// task (error), at least Retention unless the template says. Fixed on
	// each task at its creation. Defaults to RetentionDefault (7 days) and
	// RetentionFailedDefault (30 days); RetainForever (any negative
	// duration) keeps them for ever. See docs/flow-control.md#retention.
	Retention, RetentionFailed time.Duration
	// PruneInterval is how often Run deletes the finished tasks that are
	// due, PruneBatch tasks per transaction, one process at a time.
	// Defaults to PruneIntervalDefault (1 minute) and PruneBatchDefault
	// (500); a negative interval never prunes (Prune still does).
	PruneInterval time.Duration
	PruneBatch    int

	// HandlerLimits limits handler classes (class -> N): at most N attempts
	// of the class run at once across every runner on the database, as a
	// template's handler_limits does; a template that limits a class
	// differently is refused. See docs/flow-control.md#handler-class-limits.
	HandlerLimits map[string]int
}

// Client is a handle on the engine: templates, handlers, the database and
// the event bus. It is safe for concurrent use.
type Client struct {
	engine  *engine.Engine
	store   store.Store
	metrics *metrics.Metrics // nil without Config.Metrics
	tracer  *tracing.Tracer  // nil without Config.TraceExporter
}

// OpenStore opens the store a database URL names ("" = the SQLite default).
func openStore(ctx context.Context, url string) (store.Store, bool, error) {
	switch {
	case url == "":
		st, err := sqlite.Open(ctx, SQLitePathDefault)
		return st, true, err
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		st, err := postgres.Open(ctx, url)
		return st, false, err
	case strings.HasPrefix(url, "sqlite:"):
		st, err := sqlite.Open(ctx, strings.TrimPrefix(strings.TrimPrefix(url, "sqlite:"), "//"))
		return st, true, err
	}
	return nil, false, fmt.Errorf("database URL must start with postgres://, postgresql:// or sqlite: (got %q)", redact.DSN(url))
}

// Open connects to the database, loads templates and registers the built-in
// handlers. Template problems are returned as a taskertype.TemplateErrors
// listing every problem of every file.
func Open(ctx context.Context, cfg Config) (*Client, error) {
	st, isSQLite, err := openStore(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	c, err := open(ctx, st, isSQLite, cfg)
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	return c, nil
}

func open(ctx context.Context, st store.Store, isSQLite bool, cfg Config) (*Client, error) {
	if isSQLite || cfg.AutoMigrate {
		if _, err := st.MigrateUp(ctx, 0); err != nil {
			return nil, fmt.Errorf("migrate: %w", err)
		}
	}
	reg, err := loadTemplates(cfg)
	if err != nil {
		return nil, err
	}
	var m *metrics.Metrics
	var statser metrics.QueueStatser
	if cfg.Metrics != nil {
		m = metrics.New(metrics.Options{Logger: cfg.Logger})
		if err := m.Register(cfg.Metrics); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
		statser, _ = st.(metrics.QueueStatser)
		st = m.WrapStore(st)
	}
	var enq engine.EnqueueHandler
	if cfg.EventEnqueue {
		enq = engine.EventEnqueueHandler{}
	}
	eng, err := engine.New(engine.Config{
		Store: st, Templates: reg, Backoff: cfg.Backoff.internal(), EnqueueHandler: enq, RequireHandlers: !cfg.EventEnqueue,
		StepLease: cfg.StepLease, QueueLease: cfg.QueueLease, PollInterval: cfg.PollInterval,
		RescueInterval: cfg.RescueInterval, ShutdownGrace: cfg.ShutdownGrace, Owner: cfg.Owner, Logger: cfg.Logger,
		Retention: cfg.Retention, RetentionFailed: cfg.RetentionFailed, PruneInterval: cfg.PruneInterval,
		PruneBatch: cfg.PruneBatch, HandlerLimits: cfg.HandlerLimits,
	})
	if err != nil {
		if m != nil {
			m.Unregister()
		}
		return nil, err
	}
	for name, h := range builtin.Handlers(builtin.Options{EnableCommand: cfg.EnableCommandHandler,
		HTTPAllowedHosts: cfg.HTTPAllowedHosts, HTTPTimeout: cfg.HTTPTimeout, MaxResponseBytes: cfg.MaxResponseBytes}) {
		eng.RegisterHandler(name, h)
	}
	if m != nil {
		m.Start(eng.Bus(), statser)
	}
	var tr *tracing.Tracer
	if cfg.TraceExporter != nil {
		if tr, err = tracing.New(cfg.TraceExporter, tracing.Options{Logger: cfg.Logger}); err != nil {
			if m != nil {
				m.Stop()
				m.Unregister()
			}
			return nil, err
		}
		tr.Start(eng.Bus(), st)
	}
	return &Client{engine: eng, store: st, metrics: m, tracer: tr}, nil
}

func loadTemplates(cfg Config) (*template.Registry, error) {
	dir := cmp.Or(cfg.TemplatesDir, TemplatesDirDefault)
	env := cmp.Or(cfg.Environment, os.Getenv("TASKER_ENV"))
	if cfg.TemplatesDir == "" {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return template.NewRegistry(), nil
		}
	}
	reg, err := template.LoadDir(dir, env)
	if err != nil && !errors.Is(err, ErrInvalidTemplate) {
		// The directory itself is missing or unreadable: the caller's
		// template setting is wrong (its errno is no database error).
		return nil, fmt.Errorf("%w: %w", ErrInvalidTemplate, err)
	}
	return reg, err
}

// traceShutdownTimeout bounds the export of the last spans at Close.
const traceShutdownTimeout = 10 * time.Second

// Close stops this client's Run loops (gracefully, as if their contexts
// ended), then releases the database connections.
func (c *Client) Close() error {
	c.engine.Close()
	if c.metrics != nil {
		c.metrics.Stop()
	}
	var terr error
	if c.tracer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), traceShutdownTimeout)
		terr = c.tracer.Stop(ctx)
		cancel()
	}
	return errors.Join(c.store.Close(), terr)
}

// Dialect returns "postgres" or "sqlite".
func (c *Client) Dialect() string { return c.store.Dialect() }

// RegisterHandler registers a Go step handler for a template's handler_class.
func (c *Client) RegisterHandler(handlerClass string, h StepHandler) {
	c.engine.RegisterHandler(handlerClass, h)
}

// AddTemplate parses, validates and registers a YAML template.
// file names it in errors ("" is fine). Problems are returned as a
// taskertype.TemplateErrors.
func (c *Client) AddTemplate(file string, yamlDoc []byte) (*Template, error) {
	t, errs := template.Parse(file, yamlDoc, os.Getenv("TASKER_ENV"))
	if len(errs) > 0 {
		return nil, errs
	}
	if err := c.engine.Templates().Add(t); err != nil {
		return nil, err
	}
	return publicTemplate(t), nil
}

// Template looks a template up; version "" means the highest.
func (c *Client) Template(namespace, name, version string) (*Template, error) {
	t, err := c.engine.Templates().Lookup(namespace, name, version)
	if err != nil {
		return nil, err
	}
	return publicTemplate(t), nil
}

// Templates lists the loaded templates.
func (c *Client) Templates() []*Template {
	list := c.engine.Templates().List()
	out := make([]*Template, len(list))
	for i, t := range list {
		out[i] = publicTemplate(t)
	}
	return out
}

// InitializeTask validates the request and creates the task, its steps and
// its enqueue record in one transaction. created is false when the
// idempotency key already existed (the existing task is returned).
//
// The task joins the trace of the span in ctx, if any (kept as a
// "traceparent:..." tag; a request that has one keeps it). With
// Config.TraceExporter and no span in ctx, the task starts a trace.
func (c *Client) InitializeTask(ctx context.Context, req *TaskRequest) (task *Task, created bool, err error) {
	return c.engine.InitializeTask(ctx, tracing.TagRequest(ctx, req, c.tracer != nil))
}

// InitializeTaskTx creates the task inside tx, a PostgreSQL transaction of
// yours (pgx v5) on the same database and search_path as the client:
// transactional enqueue. The task, its steps and its enqueue record commit
// with your own writes, or roll back with them; runners see it once you
// commit. No task.initialized or task.enqueue event is published (the
// commit is yours); Go runners are woken by PostgreSQL's notification and
// event-based workers find the record through the re-publisher's sweep. On
// SQLite it returns an error.
//
//	tx, _ := pool.Begin(ctx)
//	defer tx.Rollback(ctx)
//	_, _ = tx.Exec(ctx, "INSERT INTO orders ...")
//	task, _, err := client.InitializeTaskTx(ctx, tx, &tasker.TaskRequest{Namespace: "shop", Name: "order_fulfillment"})
//	if err == nil { err = tx.Commit(ctx) }
func (c *Client) InitializeTaskTx(ctx context.Context, tx pgx.Tx, req *TaskRequest) (task *Task, created bool, err error) {
	return c.engine.InitializeTaskTx(ctx, tx, tracing.TagRequest(ctx, req, c.tracer != nil))
}

// Handle runs the task's viable steps until nothing more can run now, then
// finalizes it (the reference design's BaseTaskHandler#handle).
func (c *Client) Handle(ctx context.Context, taskID int64) (*HandleResult, error) {
	return c.engine.Handle(ctx, taskID)
}

// RunTask drives a task in this process until it completes, fails or is
// blocked, sleeping through backoff delays.
func (c *Client) RunTask(ctx context.Context, taskID int64) (*HandleResult, error) {
	return c.engine.RunTask(ctx, taskID)
}

// Run drains the durable queue with up to workers concurrent tasks until
// ctx ends, then shuts down gracefully. workers must be at least 1: Run
// returns an error otherwise.
func (c *Client) Run(ctx context.Context, workers int) error { return c.engine.Run(ctx, workers) }

// Subscribe returns a channel of lifecycle events of the given kinds (all
// when none) and a function that cancels the subscription. Events are
// delivered after commit; a subscriber that falls more than 1024 events
// behind loses events rather than stalling the engine.
func (c *Client) Subscribe(kinds ...EventKind) (<-chan Event, func()) {
	return c.engine.Bus().Subscribe(0, kinds...)
}

// TaskDetail is a task with its steps.
type TaskDetail struct {
	*Task
	Steps []*Step `json:"steps"`
}

// Task returns a task with its steps.
func (c *Client) Task(ctx context.Context, taskID int64) (*TaskDetail, error) {
	t, err := c.store.TaskGet(ctx, taskID)
	if err != nil {
		return nil, err
	}
	steps, err := c.store.StepList(ctx, taskID)
	if err != nil {
		return nil, err
	}
	return &TaskDetail{Task: t, Steps: steps}, nil
}

// ListTasks lists tasks, newest first.
func (c *Client) ListTasks(ctx context.Context, f *TaskFilter) ([]*Task, error) {
	if f == nil {
		f = &TaskFilter{}
	}
	return c.store.TaskList(ctx, f.internal())
}

// Explain says, for every step of a task, whether it can run and why not.
func (c *Client) Explain(ctx context.Context, taskID int64) ([]*StepReadiness, error) {
	return c.engine.Explain(ctx, taskID)
}

// Transitions returns the task's and its steps' audit trails.
func (c *Client) Transitions(ctx context.Context, taskID int64) (task, steps []*Transition, err error) {
	if task, err = c.store.TaskTransitions(ctx, taskID); err != nil {
		return nil, nil, err
	}
	if len(task) == 0 { // every task has at least its initial transition
		return nil, nil, &taskertype.TaskNotFoundError{TaskID: taskID}
	}
	steps, err = c.store.StepTransitions(ctx, taskID)
	return task, steps, err
}

// ResolveTask marks a task that is not running resolved_manually (an
// operator declares it done); its steps keep their states.
func (c *Client) ResolveTask(ctx context.Context, taskID int64, a Actor) (*Task, error) {
	return c.engine.ResolveTask(ctx, taskID, a)
}

// CancelTask cancels a task and its unfinished steps.
func (c *Client) CancelTask(ctx context.Context, taskID int64, a Actor) (*Task, error) {
	return c.engine.CancelTask(ctx, taskID, a)
}

// RetrySteps retries the named failed steps of a task (every failed step
// when names is empty), resetting their attempts, and re-enqueues the task.
func (c *Client) RetrySteps(ctx context.Context, taskID int64, names []string, a Actor) ([]string, error) {
	return c.engine.RetrySteps(ctx, taskID, names, a)
}

// ResolveStep marks a step resolved_manually so that its children may run.
func (c *Client) ResolveStep(ctx context.Context, taskID int64, name string, a Actor) (*Step, error) {
	return c.engine.ResolveStep(ctx, taskID, name, a)
}

// Queue lists the durable enqueue records, earliest first (at most 1000).
func (c *Client) Queue(ctx context.Context) ([]*QueueEntry, error) {
	es, err := c.store.QueueList(ctx, 1000)
	return publicQueueEntries(es), err
}

// Migrate applies (up) or reverts (down) migrations; steps <= 0 means all.
func (c *Client) Migrate(ctx context.Context, up bool, steps int) ([]Migration, error) {
	var ms []store.Migration
	var err error
	if up {
		ms, err = c.store.MigrateUp(ctx, steps)
	} else {
		ms, err = c.store.MigrateDown(ctx, steps)
	}
	return publicMigrations(ms), err
}

// MigrationStatus lists migrations and whether each is applied.
func (c *Client) MigrationStatus(ctx context.Context) ([]Migration, error) {
	ms, err := c.store.MigrationStatus(ctx)
	return publicMigrations(ms), err
}
