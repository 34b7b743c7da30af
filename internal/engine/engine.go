// Package engine is the orchestration core: task initialization, the
// WorkflowCoordinator (discover -> claim -> execute -> record), the
// TaskFinalizer, the TaskEnqueuer, the runner that drains the durable queue,
// the rescuer of expired leases, and the operators' manual operations. It
// decides every state change with internal/statemachine and applies it
// through the store seam.
package engine

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/jackc/pgx/v5"
	"log/slog"
	"math"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/tasker-systems/tasker/internal/backoff"
	"github.com/tasker-systems/tasker/internal/clock"
	"github.com/tasker-systems/tasker/internal/statemachine"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/taskertype"
)

// Defaults for Config.
const (
	StepLeaseDefault      = 30 * time.Second
	QueueLeaseDefault     = 60 * time.Second
	PollIntervalDefault   = time.Second
	RescueIntervalDefault = 10 * time.Second
	ShutdownGraceDefault  = 10 * time.Second
	ClaimCooldownDefault  = 10 * time.Millisecond
)

// Config configures an Engine. Zero values mean the documented default.
type Config struct {
	// Store is the database seam. Required.
	Store store.Store
	// Templates resolves task templates. Required.
	Templates *template.Registry
	// Backoff configures retry delays. Defaults to backoff.Config defaults.
	Backoff backoff.Config
	// EnqueueHandler is told about every committed enqueue request. Defaults
	// to the database queue handler.
	EnqueueHandler EnqueueHandler
	// RequireHandlers makes initialization fail when a step's handler is not
	// registered in Go (off for Ruby-driven engines, whose handlers live in Ruby).
	RequireHandlers bool
	// StepLease is how long a claimed step stays ours without a heartbeat.
	// Defaults to StepLeaseDefault.
	StepLease time.Duration
	// QueueLease is how long a claimed enqueue record stays ours without a
	// heartbeat. Defaults to QueueLeaseDefault.
	QueueLease time.Duration
	// PollInterval is the runner's polling floor. Defaults to PollIntervalDefault.
	PollInterval time.Duration
	// RescueInterval is how often the runner looks for expired step leases.
	// Defaults to RescueIntervalDefault.
	RescueInterval time.Duration
	// ClaimCooldown is the least time between a queue claim of a runner
	// that found work but emptied the queue (fewer tasks than free
	// workers) and its next claim: while tasks keep arriving, the runner
	// lets them gather for this long and claims them together, so that
	// their coordinators share statements and commits (see Run). A runner
	// working off a backlog claims whenever a worker is free. Defaults to
	// ClaimCooldownDefault; negative claims on every wake-up.
	ClaimCooldown time.Duration
	// ShutdownGrace is how long in-flight steps may finish after the context
	// of Handle ends before they are cancelled and released. Defaults to
	// ShutdownGraceDefault.
	ShutdownGrace time.Duration
	// Owner names this process in leases and transitions. Defaults to
	// host-pid-random.
	Owner string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Clock is the source of every timestamp the engine writes and every
	// delay, timeout period and tick it waits for (handler timeouts
	// excepted: they are context deadlines). Defaults to the system clock;
	// tests pass a *clock.Fake.
	Clock clock.Clock
	// Now, when set and Clock is not, is the clock's Now: the clock is then
	// clock.Real{NowFunc: Now}, whose timers are the system's.
	Now func() time.Time
	// Rand feeds backoff jitter. Defaults to math/rand.
	Rand func() float64

	// Retention is how long a task that finished complete, cancelled or
	// resolved manually is kept before the runners prune it, when its
	// template has no retention; RetentionFailed likewise for a task that
	// failed (error), at least Retention unless the template says. Fixed
	// on each task at its creation. Default RetentionDefault (7 days) and
	// RetentionFailedDefault (30 days); negative (RetainForever): for ever.
	Retention, RetentionFailed time.Duration
	// PruneInterval is how often a Run loop deletes the finished tasks
	// that are due, PruneBatch tasks per transaction (one pruner at a time
	// among all processes). Defaults PruneIntervalDefault (1 minute) and
	// PruneBatchDefault (500); a negative interval never prunes (`tasker
	// prune` still does).
	PruneInterval time.Duration
	PruneBatch    int

	// HandlerLimits limits handler classes (class -> N): at most N attempts
	// of the class run at once across every runner on the database, as a
	// template's handler_limits does. Added to Templates; a class a
	// template limits differently is refused (New fails).
	HandlerLimits map[string]int
}

// Engine runs tasks. It is safe for concurrent use.
type Engine struct {
	cfg      Config
	store    store.Store
	bus      *Bus
	backoff  *backoff.Calculator
	log      *slog.Logger
	enqueuer EnqueueHandler

	mu       sync.RWMutex
	handlers map[string]taskertype.StepHandler

	wake chan struct{}
	// announcer wakes the runners of every process after an enqueue (nil:
	// the database notifies, or nothing does).
	announcer store.QueueAnnouncer

	// tmplJSON caches templateJSON by *template.Template.
	tmplJSON sync.Map

	// creates coalesces concurrent InitializeTask calls.
	creates *creates
	// records and claims batch the coordinators' store writes across
	// tasks (batcher.go, txbatch.go).
	records *batcher[*recordReq]
	claims  *batcher[*claimReq]

	// leases keeps the leases of the steps this engine's coordinators hold.
	leases *stepLeases
	// limits takes the tokens of shared rate limits (ratelimit.go).
	limits *rateLimiter
	// slots takes the slots of limited handler classes (handlerlimit.go).
	slots *handlerSlots
	// scheds is the cron scheduler a Run loop runs (schedules.go).
	scheds schedulers
	// prune is the pruning loop a Run loop runs (retention.go).
	prune pruners
	// conc caches whether a loaded template declares a concurrency key.
	conc concurrencyUse
	// quit is closed by Close; runners derive their context from it.
	quit      chan struct{}
	closeOnce sync.Once
	runners   sync.WaitGroup
}

// New validates cfg and returns an Engine.
func New(cfg Config) (*Engine, error) {
	if cfg.Store == nil {
		return nil, errors.New("engine: Config.Store is required")
	}
	if cfg.Templates == nil {
		cfg.Templates = template.NewRegistry()
	}
	cfg.Backoff = cfg.Backoff.WithDefaults()
	if err := cfg.Backoff.Validate(); err != nil {
		return nil, fmt.Errorf("engine: backoff: %w", err)
	}
	cfg.StepLease = cmp.Or(cfg.StepLease, StepLeaseDefault)
	cfg.QueueLease = cmp.Or(cfg.QueueLease, QueueLeaseDefault)
	cfg.PollInterval = cmp.Or(cfg.PollInterval, PollIntervalDefault)
	cfg.RescueInterval = cmp.Or(cfg.RescueInterval, RescueIntervalDefault)
	cfg.ShutdownGrace = cmp.Or(cfg.ShutdownGrace, ShutdownGraceDefault)
	cfg.ClaimCooldown = cmp.Or(cfg.ClaimCooldown, ClaimCooldownDefault)
	if cfg.StepLease < 0 || cfg.QueueLease < 0 || cfg.PollInterval < 0 || cfg.RescueInterval < 0 || cfg.ShutdownGrace < 0 {
		return nil, errors.New("engine: durations in Config cannot be negative")
	}
	if err := cfg.applyRetentionDefaults(); err != nil {
		return nil, err
	}
	if cfg.Owner == "" {
		cfg.Owner = newOwner()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{NowFunc: cfg.Now}
	}
	e := &Engine{
		cfg:      cfg,
		store:    cfg.Store,
		bus:      NewBus(),
		backoff:  backoff.New(cfg.Backoff, cfg.Rand),
		log:      cfg.Logger,
		handlers: map[string]taskertype.StepHandler{},
		wake:     make(chan struct{}, 1),
		quit:     make(chan struct{}),
	}
	e.announcer = queueAnnouncerOf(cfg.Store)
	e.leases = newStepLeases(e)
	e.newBatchers()
	e.limits = newRateLimiter(e)
	e.slots = newHandlerSlots(e)
	for _, class := range sortedClasses(cfg.HandlerLimits) {
		if err := cfg.Templates.SetHandlerLimit(class, cfg.HandlerLimits[class], "engine Config.HandlerLimits"); err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
	}
	e.creates = &creates{many: cfg.Store.TaskCreateMany, one: cfg.Store.TaskCreate}
	e.enqueuer = cfg.EnqueueHandler
	if e.enqueuer == nil {
		e.enqueuer = DatabaseEnqueueHandler{wake: e.nudge}
	}
	return e, nil
}

// sortedClasses returns the classes of m in order.
func sortedClasses(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func newOwner() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", cmp.Or(host, "host"), os.Getpid(), hex.EncodeToString(b[:]))
}

// Bus returns the event bus.
func (e *Engine) Bus() *Bus { return e.bus }

// Store returns the store.
func (e *Engine) Store() store.Store { return e.store }

// Templates returns the template registry.
func (e *Engine) Templates() *template.Registry { return e.cfg.Templates }

// Owner returns the lease owner name of this engine.
func (e *Engine) Owner() string { return e.cfg.Owner }

// Backoff returns the retry delay calculator.
func (e *Engine) Backoff() *backoff.Calculator { return e.backoff }

// RegisterHandler registers a Go step handler under a handler_class name.
func (e *Engine) RegisterHandler(name string, h taskertype.StepHandler) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.handlers[name] = h
}

func (e *Engine) handler(name string) taskertype.StepHandler {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.handlers[name]
}

func (e *Engine) now() time.Time { return e.cfg.Clock.Now().UTC() }

// leased sets the time and lease of a step claim. On the system clock the
// claim takes the database's clock when its statement runs (Lease), so
// that its time never precedes results recorded while it waited. On any
// other clock (a test's fake) it takes the engine's time (Now,
// LeaseUntil), so that claims agree with the readiness the engine's clock
// computes.
func (e *Engine) leased(p *store.StepClaimParams) *store.StepClaimParams {
	if e.systemClock() {
		p.Lease = e.cfg.StepLease
		return p
	}
	now := e.now()
	p.Now, p.LeaseUntil = now, now.Add(e.cfg.StepLease)
	return p
}

// systemClock says whether the engine runs on the system clock (not a
// test's fake): the clock the database's own agrees with.
func (e *Engine) systemClock() bool {
	_, system := e.cfg.Clock.(clock.Real)
	return system
}

// since is the time elapsed on the engine's clock since t.
func (e *Engine) since(t time.Time) time.Duration { return e.cfg.Clock.Now().Sub(t) }

// until is the time left on the engine's clock until t.
func (e *Engine) until(t time.Time) time.Duration { return t.Sub(e.cfg.Clock.Now()) }

// after fires once, d from now on the engine's clock.
func (e *Engine) after(d time.Duration) <-chan time.Time { return e.cfg.Clock.NewTimer(d).C() }

// sleep waits d on the engine's clock; it returns false when ctx ended
// first.
func (e *Engine) sleep(ctx context.Context, d time.Duration) bool {
	t := e.cfg.Clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// templateJSON returns the template as stored with its named task,
// encoded once per loaded template.
func (e *Engine) templateJSON(t *template.Template) json.RawMessage {
	if v, ok := e.tmplJSON.Load(t); ok {
		return v.(json.RawMessage)
	}
	b, _ := json.Marshal(t)
	e.tmplJSON.Store(t, json.RawMessage(b))
	return b
}

// Close stops every Run loop of this engine (as if their contexts ended)
// and waits for them to shut down gracefully. It does not close the store.
func (e *Engine) Close() {
	e.closeOnce.Do(func() { close(e.quit) })
	e.runners.Wait()
}

// nudge wakes a local runner waiting for work.
func (e *Engine) nudge() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// TaskRequest is taskertype.TaskRequest.
type TaskRequest = taskertype.TaskRequest

// InitializeTask validates the request against its template and writes the
// task, its steps, edges, initial transitions and its enqueue record in one
// transaction. It returns the task and whether it was created (false when
// the idempotency key already existed).
func (e *Engine) InitializeTask(ctx context.Context, req *TaskRequest) (*taskertype.Task, bool, error) {
	p, err := e.taskCreateParams(req)
	if err != nil {
		return nil, false, err
	}
	res, err := e.createOne(ctx, p)
	if err != nil {
		return nil, false, err
	}
	if res.Created {
		e.announceCreated(ctx, p, res.Task.ID)
	}
	return res.Task, res.Created, nil
}

// InitializeTaskTx is InitializeTask inside tx, a PostgreSQL transaction the
// caller began and will commit or roll back (transactional enqueue): the
// task, its steps and its enqueue record become visible with the caller's
// own writes, or not at all. Runners learn of it at the commit (the queue's
// NOTIFY) or at their next poll; no task.initialized or task.enqueue event
// is published, since the commit is the caller's (event-based workers find
// the record through the re-publisher's sweep). A store without the
// capability (SQLite) returns an error.
func (e *Engine) InitializeTaskTx(ctx context.Context, tx pgx.Tx, req *TaskRequest) (*taskertype.Task, bool, error) {
	txs, ok := e.store.(store.TxTaskCreator)
	if !ok {
		return nil, false, fmt.Errorf("initialize a task in a caller's transaction: the %s store cannot (PostgreSQL only)",
			e.store.Dialect())
	}
	if tx == nil {
		return nil, false, &taskertype.RequestError{Field: "tx", Msg: "a transaction is required"}
	}
	p, err := e.taskCreateParams(req)
	if err != nil {
		return nil, false, err
	}
	res, err := txs.TaskCreateTx(ctx, tx, p)
	if err != nil {
		return nil, false, err
	}
	return res.Task, res.Created, nil
}

// taskCreateParams validates a request against its template and builds the
// rows to write.
func (e *Engine) taskCreateParams(req *TaskRequest) (*store.TaskCreateParams, error) {
	if req.Priority < math.MinInt32 || req.Priority > math.MaxInt32 {
		return nil, &taskertype.RequestError{Field: "priority", Msg: "must fit in 32 bits"}
	}
	ns := cmp.Or(req.Namespace, template.NamespaceDefault)
	tmpl, err := e.cfg.Templates.Lookup(ns, req.Name, req.Version)
	if err != nil {
		return nil, err
	}
	taskCtx := req.Context
	if len(taskCtx) == 0 {
		taskCtx = json.RawMessage(`{}`)
	}
	if err := checkRequestText(req, tmpl.Key()); err != nil {
		return nil, err
	}
	if err := tmpl.ValidateContext(taskCtx); err != nil {
		return nil, err
	}
	bypass := map[string]bool{}
	for _, name := range req.BypassSteps {
		st := tmpl.Step(name)
		if st == nil {
			return nil, &taskertype.RequestError{Field: "bypass_steps", Step: name, Msg: "no such step in " + tmpl.Key()}
		}
		if !st.Skippable {
			return nil, &taskertype.RequestError{Field: "bypass_steps", Step: name, Msg: "step is not skippable"}
		}
		bypass[name] = true
	}
	for name := range req.StepInputs {
		if tmpl.Step(name) == nil {
			return nil, &taskertype.RequestError{Field: "step_inputs", Step: name, Msg: "no such step in " + tmpl.Key()}
		}
	}
	specs := make([]store.StepSpec, 0, len(tmpl.Steps))
	for _, st := range tmpl.TopoOrder() {
		if e.cfg.RequireHandlers && !bypass[st.Name] && e.handler(st.HandlerClass) == nil {
			return nil, &taskertype.RequestError{Step: st.Name,
				Msg: fmt.Sprintf("no handler registered for handler_class %q", st.HandlerClass)}
		}
		var cfgJSON json.RawMessage
		if len(st.HandlerConfig) > 0 {
			if cfgJSON, err = json.Marshal(st.HandlerConfig); err != nil {
				return nil, &taskertype.RequestError{Step: st.Name, Field: "handler_config", Msg: err.Error()}
			}
		}
		specs = append(specs, store.StepSpec{
			Name: st.Name, HandlerClass: st.HandlerClass, HandlerConfig: cfgJSON, Retryable: st.Retryable,
			MaxAttempts: st.MaxAttempts, TimeoutSeconds: st.TimeoutSeconds, Skippable: st.Skippable,
			Inputs: req.StepInputs[st.Name], Bypassed: bypass[st.Name], Parents: st.DependsOn,
		})
	}
	conc, err := taskConcurrency(tmpl, taskCtx)
	if err != nil {
		return nil, err
	}
	tmplJSON := e.templateJSON(tmpl)
	now := e.now()
	due, delayed, err := dueTime(req, now)
	if err != nil {
		return nil, err
	}
	var runAt *time.Time
	if delayed {
		runAt = &due
	}
	keep, keepFailed := e.taskRetention(tmpl)
	return &store.TaskCreateParams{
		Namespace: tmpl.Namespace, Name: tmpl.Name, Version: tmpl.Version, Description: tmpl.Description,
		TemplateJSON: tmplJSON, Context: taskCtx, Initiator: req.Initiator, SourceSystem: req.SourceSystem,
		Reason: req.Reason, Tags: req.Tags, Priority: req.Priority, IdempotencyKey: req.IdempotencyKey,
		MaxParallelSteps: tmpl.MaxParallelSteps, Steps: specs, Actor: cmp.Or(req.Initiator, "tasker"), Now: now,
		RunAt: runAt, IdempotencyWindow: time.Duration(tmpl.IdempotencyWindowSeconds) * time.Second, Concurrency: conc,
		Queue: store.QueueOp{Kind: store.QueueUpsert, Operation: OperationEnqueue, RunAt: due, Priority: req.Priority,
			Reason: "task initialized"},
		SkipStepsResult: true,
		Retention:       keep, RetentionFailed: keepFailed,
	}, nil
}

// taskEvent moves a task with the state machine deciding the target.
func (e *Engine) taskEvent(ctx context.Context, taskID int64, ev statemachine.TaskEvent, reason, actor string,
	queue store.QueueOp) (*store.TransitionResult, error) {
	to, err := taskTarget(ev)
	if err != nil {
		return nil, err
	}
	return e.store.TaskTransition(ctx, &store.TaskTransitionParams{
		TaskID: taskID, From: statemachine.TaskSources(ev), To: to, Event: string(ev), Reason: reason,
		Actor: actor, Now: e.now(), Queue: queue,
	})
}

// taskTarget returns the state an event leads to from any of its sources.
func taskTarget(ev statemachine.TaskEvent) (taskertype.TaskState, error) {
	srcs := statemachine.TaskSources(ev)
	if len(srcs) == 0 {
		return "", fmt.Errorf("task event %q has no source state", ev)
	}
	to, _, err := statemachine.Task(srcs[0], ev)
	return to, err
}

func stepTarget(ev statemachine.StepEvent) taskertype.StepState {
	srcs := statemachine.StepSources(ev)
	to, _, _ := statemachine.Step(srcs[0], ev)
	return to
}

// dueTime is when a requested task is due: RunAt or now + DelaySeconds for
// a delayed task (delayed true), now otherwise. A RunAt in the past is now.
func dueTime(req *TaskRequest, now time.Time) (due time.Time, delayed bool, err error) {
	switch {
	case req.RunAt != nil && req.DelaySeconds != 0:
		return now, false, &taskertype.RequestError{Field: "run_at", Msg: "run_at and delay_seconds are exclusive: give one"}
	case math.IsNaN(req.DelaySeconds) || req.DelaySeconds < 0 || req.DelaySeconds > taskertype.MaxDelaySeconds:
		return now, false, &taskertype.RequestError{Field: "delay_seconds",
			Msg: fmt.Sprintf("must be between 0 and %d seconds, got %v", taskertype.MaxDelaySeconds, req.DelaySeconds)}
	case req.DelaySeconds > 0:
		return now.Add(time.Duration(req.DelaySeconds * float64(time.Second))), true, nil
	case req.RunAt != nil && req.RunAt.After(now):
		return req.RunAt.UTC(), true, nil
	}
	return now, false, nil
}
