package httpapi

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.yaml.in/yaml/v3"
	"modernc.org/sqlite"

	"github.com/tasker-systems/tasker"
)

// The RPC surface: the methods an external worker (the Ruby gem) calls. The
// same JSON documents travel over two transports: the C ABI of libtasker
// (tasker_call(handle, method, params, timeout_ms)) and POST /v1/rpc/{method}
// of `tasker serve`. Dispatcher implements the methods once for both.

// Error codes that only the RPC surface produces.
const (
	// CodeDatabase: the database failed or does not answer.
	CodeDatabase = "database"
	// CodeTimeout: the call's timeout ended it.
	CodeTimeout = "timeout"
)

// TimeoutHeader carries the timeout of a POST /v1/rpc/{method} call in
// milliseconds; the server stops waiting (and answers 504) after it.
const TimeoutHeader = "Tasker-Timeout-Ms"

// MaxCallTimeout is the longest TimeoutHeader honoured; larger values are
// taken as this.
const MaxCallTimeout = 24 * time.Hour

// Limits of the event subscriptions.
const (
	// SubscriptionBufferDefault is a subscription's buffer, in events.
	SubscriptionBufferDefault = 4096
	// SubscriptionIdleTimeout ends a subscription nobody polled for this long.
	SubscriptionIdleTimeout = 5 * time.Minute
	// PollWaitMax bounds how long events_poll waits for a first event.
	PollWaitMax = 30 * time.Second
	// PollMaxDefault is how many events one poll returns at most by default.
	PollMaxDefault = 1000
)

// Dispatcher implements the RPC methods on a Client. It is safe for
// concurrent use.
type Dispatcher struct {
	c       *tasker.Client
	w       *tasker.Worker // c's pull protocol
	version string

	mu     sync.Mutex
	subs   map[string]*subscription
	groups map[string]*subscriptionGroup
	// lastReap is when polls last reaped idle subscriptions.
	lastReap time.Time
}

// NewDispatcher returns the RPC methods of c; version is reported by "info".
func NewDispatcher(c *tasker.Client, version string) *Dispatcher {
	return &Dispatcher{c: c, w: c.Worker(), version: version, subs: map[string]*subscription{}, groups: map[string]*subscriptionGroup{}}
}

// Close ends every event subscription.
func (d *Dispatcher) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id := range d.subs {
		d.endLocked(id)
	}
}

// Methods lists the RPC method names, sorted.
func (d *Dispatcher) Methods() []string {
	out := make([]string, 0, len(rpcMethods))
	for m := range rpcMethods {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

type rpcMethod func(d *Dispatcher, ctx context.Context, params []byte) (any, error)

var rpcMethods map[string]rpcMethod

func init() {
	rpcMethods = map[string]rpcMethod{
		"ping":               (*Dispatcher).ping,
		"info":               (*Dispatcher).rpcInfo,
		"find_handler":       (*Dispatcher).findHandler,
		"initialize_task":    (*Dispatcher).initializeTask,
		"task":               (*Dispatcher).task,
		"claim_steps":        (*Dispatcher).claimSteps,
		"report_results":     (*Dispatcher).reportResults,
		"extend_leases":      (*Dispatcher).extendLeases,
		"finalize":           (*Dispatcher).finalize,
		"yield":              (*Dispatcher).yield,
		"handle":             (*Dispatcher).handle,
		"cancel":             (*Dispatcher).cancel,
		"retry":              (*Dispatcher).retry,
		"resolve":            (*Dispatcher).resolve,
		"rescue":             (*Dispatcher).rescue,
		"migrate":            (*Dispatcher).migrate,
		"events_subscribe":   (*Dispatcher).eventsSubscribe,
		"events_poll":        (*Dispatcher).eventsPoll,
		"events_unsubscribe": (*Dispatcher).eventsUnsubscribe,
		"queue_claim":        (*Dispatcher).queueClaim,
		"queue_ack":          (*Dispatcher).queueAck,
		"queue_list":         (*Dispatcher).queueList,
		"transitions":        (*Dispatcher).transitions,
		"explain":            (*Dispatcher).explain,
		"schedules":          (*Dispatcher).schedules,
	}
}

// Call runs one method with its JSON params (empty means {}) and returns
// the result document. Errors are classified with ErrorOf.
func (d *Dispatcher) Call(ctx context.Context, method string, params []byte) (any, error) {
	m, ok := rpcMethods[method]
	if !ok {
		return nil, badRequest("unknown method "+strconv.Quote(method), map[string]any{"method": method, "methods": d.Methods()})
	}
	return m(d, ctx, params)
}

// ErrorBody is the error document of both transports: {"code", "message",
// "details"}.
type ErrorBody = errorBody

// ErrorOf classifies err into the protocol's error document and the HTTP
// status that goes with it. Unclassified errors are "database" when they come
// from the database driver, "timeout" when a deadline ended the call, else
// "internal"; their message is the error's own (callers that must not leak
// it, like the HTTP server, replace it).
func ErrorOf(err error) (ErrorBody, int) {
	if ae := classify(err); ae != nil {
		return ErrorBody{Code: ae.code, Message: ae.message, Details: ae.details}, ae.status
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return ErrorBody{Code: CodeTimeout, Message: err.Error()}, http.StatusGatewayTimeout
	case isDatabaseError(err):
		return ErrorBody{Code: CodeDatabase, Message: err.Error()}, http.StatusServiceUnavailable
	}
	return ErrorBody{Code: CodeInternal, Message: err.Error()}, http.StatusInternalServerError
}

func isDatabaseError(err error) bool {
	var (
		pge  *pgconn.PgError
		pgce *pgconn.ConnectError
		sle  *sqlite.Error
		ne   net.Error
	)
	return errors.As(err, &pge) || errors.As(err, &pgce) || errors.As(err, &sle) || errors.As(err, &ne) ||
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) || pgconn.Timeout(err) ||
		strings.Contains(err.Error(), "closed pool")
}

// decodeParams decodes params into dst, refusing unknown fields and
// trailing data; empty params decode as {}.
func decodeParams(params []byte, dst any) error {
	params = bytes.TrimSpace(params)
	if len(params) == 0 || string(params) == "null" {
		params = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(params))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return badRequest(fmt.Sprintf("params are not valid JSON (offset %d): %v", se.Offset, err), nil)
		case errors.As(err, &te):
			return badRequest(fmt.Sprintf("params: field %q must be %s", te.Field, te.Type), map[string]any{"field": te.Field})
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return badRequest("params: unknown field "+strconv.Quote(f), map[string]any{"field": f})
		}
		return badRequest("params: "+err.Error(), nil)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("params: unexpected data after the JSON object", nil)
	}
	if err := checkDocument(params, dst); err != nil {
		return err
	}
	if v, ok := dst.(interface{ validate() error }); ok {
		return v.validate()
	}
	return nil
}

func requireTaskID(id int64) error {
	if id <= 0 {
		return badRequest("task_id must be a positive integer", map[string]any{"field": "task_id"})
	}
	return nil
}

func requireOwner(owner string) error {
	if strings.TrimSpace(owner) == "" {
		return badRequest("owner is required: name the worker process holding the leases", map[string]any{"field": "owner"})
	}
	return nil
}

// pingDoc answers "ping".
type pingDoc struct {
	Pong bool `json:"pong"`
}

func (d *Dispatcher) ping(_ context.Context, params []byte) (any, error) {
	if len(params) > 2 { // the cheap path for "" and "{}"
		if err := decodeParams(params, &struct{}{}); err != nil {
			return nil, err
		}
	}
	return pingDoc{Pong: true}, nil
}

// rpcInfoDoc answers "info".
type rpcInfoDoc struct {
	Protocol          string   `json:"protocol"`
	Version           string   `json:"version"`
	Dialect           string   `json:"dialect"`
	Owner             string   `json:"owner"`
	StepLeaseSeconds  float64  `json:"step_lease_seconds"`
	Methods           []string `json:"methods"`
	TemplatesLoaded   int      `json:"templates_loaded"`
	ProcessID         int      `json:"pid"`
	SubscriptionCount int      `json:"subscriptions"`
}

func (d *Dispatcher) rpcInfo(_ context.Context, params []byte) (any, error) {
	if err := decodeParams(params, &struct{}{}); err != nil {
		return nil, err
	}
	d.mu.Lock()
	n := len(d.subs)
	d.mu.Unlock()
	return rpcInfoDoc{Protocol: Protocol, Version: d.version, Dialect: d.c.Dialect(), Owner: d.w.Owner(),
		StepLeaseSeconds: d.w.StepLease().Seconds(), Methods: d.Methods(), TemplatesLoaded: len(d.c.Templates()),
		ProcessID: os.Getpid(), SubscriptionCount: n}, nil
}

// findHandlerParams is the input of "find_handler".
type findHandlerParams struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Version   string `json:"version"`
}

// findHandlerDoc answers "find_handler" (TaskHandlerRegistry lookup).
type findHandlerDoc struct {
	Found            bool         `json:"found"`
	Namespace        string       `json:"namespace"`
	Name             string       `json:"name"`
	Version          string       `json:"version,omitempty"`
	TaskHandlerClass string       `json:"task_handler_class,omitempty"`
	YAMLTemplate     string       `json:"yaml_template,omitempty"`
	Template         *templateDoc `json:"template,omitempty"`
	// Error explains a miss: what was asked and which versions exist.
	Error *ErrorBody `json:"error,omitempty"`
}

func (d *Dispatcher) findHandler(_ context.Context, params []byte) (any, error) {
	var p findHandlerParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if strings.TrimSpace(p.Name) == "" {
		return nil, badRequest("name is required", map[string]any{"field": "name"})
	}
	ns := p.Namespace
	if ns == "" {
		ns = "default"
	}
	t, err := d.c.Template(ns, p.Name, p.Version)
	if err != nil {
		eb, status := ErrorOf(err)
		if status != http.StatusNotFound {
			return nil, err
		}
		return findHandlerDoc{Namespace: ns, Name: p.Name, Version: p.Version, Error: &eb}, nil
	}
	doc := newTemplateDoc(t)
	y, err := templateYAML(t)
	if err != nil {
		return nil, fmt.Errorf("find handler: %w", err)
	}
	return findHandlerDoc{Found: true, Namespace: t.Namespace, Name: t.Name, Version: t.Version,
		TaskHandlerClass: t.TaskHandlerClass, YAMLTemplate: y, Template: &doc}, nil
}

// templateYAML returns the template's YAML source: its file when it was read
// from one, else the template rendered as YAML.
func templateYAML(t *tasker.Template) (string, error) {
	if t.File != "" {
		if b, err := os.ReadFile(t.File); err == nil {
			return string(b), nil
		}
	}
	j, err := json.Marshal(t)
	if err != nil {
		return "", fmt.Errorf("encode template %s: %w", t.Key(), err)
	}
	var m map[string]any
	if err := json.Unmarshal(j, &m); err != nil {
		return "", fmt.Errorf("decode template %s: %w", t.Key(), err)
	}
	y, err := yaml.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("render template %s as YAML: %w", t.Key(), err)
	}
	return string(y), nil
}

func (d *Dispatcher) initializeTask(ctx context.Context, params []byte) (any, error) {
	var req tasker.TaskRequest
	if err := decodeParams(params, &req); err != nil {
		return nil, err
	}
	if strings.TrimSpace(req.Name) == "" {
		return nil, badRequest("name is required", map[string]any{"field": "name"})
	}
	if bytes.Equal(bytes.TrimSpace(req.Context), []byte("null")) {
		req.Context = nil
	}
	task, created, err := d.c.InitializeTask(ctx, &req)
	if err != nil {
		return nil, err
	}
	detail, err := d.c.Task(ctx, task.ID)
	if err != nil {
		return nil, err
	}
	return taskDoc{Task: detail, Created: &created}, nil
}

// taskIDParams is the input of methods that only name a task.
type taskIDParams struct {
	TaskID int64 `json:"task_id"`
}

func (d *Dispatcher) task(ctx context.Context, params []byte) (any, error) {
	var p taskIDParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	detail, err := d.c.Task(ctx, p.TaskID)
	if err != nil {
		return nil, err
	}
	return taskDoc{Task: detail}, nil
}

// transitions answers "transitions": the task's and its steps' audit trail
// (as GET /v1/tasks/{id}/transitions); a step transition's metadata holds
// the attempt and, for a failure, its error: the per-attempt history.
func (d *Dispatcher) transitions(ctx context.Context, params []byte) (any, error) {
	var p taskIDParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	task, steps, err := d.c.Transitions(ctx, p.TaskID)
	if err != nil {
		return nil, err
	}
	doc := transitionsDoc{Task: task, Steps: steps}
	if doc.Task == nil {
		doc.Task = []*tasker.Transition{}
	}
	if doc.Steps == nil {
		doc.Steps = []*tasker.Transition{}
	}
	return doc, nil
}

// explain is the RPC method "explain": the document of
// GET /v1/tasks/{id}/explain (the task's status and each step's reason).
func (d *Dispatcher) explain(ctx context.Context, params []byte) (any, error) {
	var p taskIDParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	return explainDocument(ctx, d.c, p.TaskID)
}

// claimParams is the input of "claim_steps".
type claimParams struct {
	TaskID int64  `json:"task_id"`
	Owner  string `json:"owner"`
	Limit  int    `json:"limit"`
}

func (d *Dispatcher) claimSteps(ctx context.Context, params []byte) (any, error) {
	var p claimParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	return d.w.ClaimSteps(ctx, tasker.ClaimParams{TaskID: p.TaskID, Owner: p.Owner, Limit: p.Limit})
}

// reportParams is the input of "report_results".
type reportParams struct {
	TaskID  int64                   `json:"task_id"`
	Owner   string                  `json:"owner"`
	Results []tasker.ExternalResult `json:"results"`
	// Finalize asks for the TaskFinalizer's decision in the same call.
	Finalize bool `json:"finalize"`
}

func (d *Dispatcher) reportResults(ctx context.Context, params []byte) (any, error) {
	var p reportParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	for i, r := range p.Results {
		if r.StepID <= 0 || r.Attempt <= 0 {
			return nil, badRequest(fmt.Sprintf("results[%d]: step_id and attempt must be positive", i),
				map[string]any{"field": "results"})
		}
		if r.Release && r.Success {
			return nil, badRequest(fmt.Sprintf("results[%d]: a released attempt cannot be a success", i),
				map[string]any{"field": "results"})
		}
	}
	if !p.Finalize {
		return d.w.ReportResults(ctx, tasker.ReportParams{TaskID: p.TaskID, Owner: p.Owner, Results: p.Results})
	}
	rep, err := d.w.ReportAndFinalize(ctx, tasker.ReportParams{TaskID: p.TaskID, Owner: p.Owner, Results: p.Results})
	if err != nil {
		return nil, err
	}
	return reportDoc{ReportResult: rep, Final: &handleDoc{HandleResult: rep.Final,
		Finalized: rep.Final.Finalized() && rep.Final.Outcome != "continue"}}, nil
}

// reportDoc answers "report_results" with finalize: the finalizer's result
// as "finalize" returns it.
type reportDoc struct {
	*tasker.ReportResult
	Final *handleDoc `json:"final,omitempty"`
}

// extendParams is the input of "extend_leases".
type extendParams struct {
	Owner   string  `json:"owner"`
	StepIDs []int64 `json:"step_ids"`
}

func (d *Dispatcher) extendLeases(ctx context.Context, params []byte) (any, error) {
	var p extendParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	return d.w.ExtendLeases(ctx, p.Owner, p.StepIDs)
}

// ownerTaskParams is the input of "finalize".
type ownerTaskParams struct {
	TaskID int64  `json:"task_id"`
	Owner  string `json:"owner"`
}

func (d *Dispatcher) finalize(ctx context.Context, params []byte) (any, error) {
	var p ownerTaskParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	res, err := d.w.Finalize(ctx, p.TaskID, p.Owner)
	if err != nil {
		return nil, err
	}
	return handleDoc{HandleResult: res, Finalized: res.Finalized() && res.Outcome != "continue"}, nil
}

// yieldParams is the input of "yield".
type yieldParams struct {
	TaskID int64  `json:"task_id"`
	Owner  string `json:"owner"`
	Reason string `json:"reason"`
}

func (p *yieldParams) validate() error { return cmp.Or(requireTaskID(p.TaskID), requireOwner(p.Owner)) }

func (d *Dispatcher) yield(ctx context.Context, params []byte) (any, error) {
	var p yieldParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	res, err := d.w.Yield(ctx, tasker.YieldParams{TaskID: p.TaskID, Owner: p.Owner, Reason: p.Reason})
	if err != nil {
		return nil, err
	}
	return handleDoc{HandleResult: res, Finalized: false}, nil
}

func (d *Dispatcher) handle(ctx context.Context, params []byte) (any, error) {
	var p taskIDParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	res, err := d.c.Handle(ctx, p.TaskID)
	if err != nil {
		return nil, err
	}
	return handleDoc{HandleResult: res, Finalized: res.Finalized()}, nil
}

// actorTaskParams is the input of "cancel" and "resolve".
type actorTaskParams struct {
	TaskID int64  `json:"task_id"`
	Step   string `json:"step"`
	Actor  string `json:"actor"`
	Reason string `json:"reason"`
}

func (d *Dispatcher) cancel(ctx context.Context, params []byte) (any, error) {
	var p actorTaskParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if _, err := d.c.CancelTask(ctx, p.TaskID, tasker.Actor{Who: p.Actor, Reason: p.Reason}); err != nil {
		return nil, err
	}
	detail, err := d.c.Task(ctx, p.TaskID)
	if err != nil {
		return nil, err
	}
	return taskDoc{Task: detail}, nil
}

// retryParams is the input of "retry".
type retryParams struct {
	TaskID int64    `json:"task_id"`
	Steps  []string `json:"steps"`
	Actor  string   `json:"actor"`
	Reason string   `json:"reason"`
}

func (d *Dispatcher) retry(ctx context.Context, params []byte) (any, error) {
	var p retryParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	var names []string
	for _, n := range p.Steps {
		if strings.TrimSpace(n) == "" {
			return nil, badRequest("steps: step names cannot be empty", map[string]any{"field": "steps"})
		}
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	retried, err := d.c.RetrySteps(ctx, p.TaskID, names, tasker.Actor{Who: p.Actor, Reason: p.Reason})
	if err != nil {
		return nil, err
	}
	if retried == nil {
		retried = []string{}
	}
	return map[string][]string{"retried": retried}, nil
}

func (d *Dispatcher) resolve(ctx context.Context, params []byte) (any, error) {
	var p actorTaskParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if strings.TrimSpace(p.Step) == "" {
		return nil, badRequest("step is required", map[string]any{"field": "step"})
	}
	step, err := d.c.ResolveStep(ctx, p.TaskID, p.Step, tasker.Actor{Who: p.Actor, Reason: p.Reason})
	if err != nil {
		return nil, err
	}
	return map[string]*tasker.Step{"step": step}, nil
}

func (d *Dispatcher) rescue(ctx context.Context, params []byte) (any, error) {
	if err := decodeParams(params, &struct{}{}); err != nil {
		return nil, err
	}
	n, err := d.w.RescueExpired(ctx)
	if err != nil {
		return nil, err
	}
	return map[string]int{"rescued": n}, nil
}

// migrateParams is the input of "migrate".
type migrateParams struct {
	// Direction is "up" (default), "down" or "status".
	Direction string `json:"direction"`
	Steps     int    `json:"steps"`
}

func (d *Dispatcher) migrate(ctx context.Context, params []byte) (any, error) {
	var p migrateParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	var (
		ms  []tasker.Migration
		err error
	)
	switch p.Direction {
	case "", "up":
		ms, err = d.c.Migrate(ctx, true, p.Steps)
	case "down":
		ms, err = d.c.Migrate(ctx, false, p.Steps)
	case "status":
		ms, err = d.c.MigrationStatus(ctx)
	default:
		return nil, badRequest(`direction must be "up", "down" or "status"`, map[string]any{"field": "direction"})
	}
	if err != nil {
		return nil, fmt.Errorf("migrate %s: %w", p.Direction, err)
	}
	if ms == nil {
		ms = []tasker.Migration{}
	}
	return map[string][]tasker.Migration{"migrations": ms}, nil
}

// pollParams is the input of "events_poll".
type pollParams struct {
	SubscriptionID string `json:"subscription_id"`
	// Max bounds the events returned (PollMaxDefault when 0).
	Max int `json:"max"`
	// WaitMS is how long to wait for a first event (0 = answer at once; at
	// most PollWaitMax).
	WaitMS int `json:"wait_ms"`
}

// pollDoc answers "events_poll".
type pollDoc struct {
	Events []tasker.Event `json:"events"`
	// Dropped counts events the engine dropped so far because some
	// subscriber's buffer was full.
	Dropped int64 `json:"dropped"`
}

func (d *Dispatcher) eventsPoll(ctx context.Context, params []byte) (any, error) {
	var p pollParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if p.Max < 0 || p.WaitMS < 0 {
		return nil, badRequest("max and wait_ms cannot be negative", nil)
	}
	if p.Max == 0 {
		p.Max = PollMaxDefault
	}
	s, err := d.subscription(p.SubscriptionID)
	if err != nil {
		return nil, err
	}
	s.busy.Lock()
	defer s.busy.Unlock()
	doc := pollDoc{Events: []tasker.Event{}}
	wait := time.Duration(min(int64(p.WaitMS), PollWaitMax.Milliseconds())) * time.Millisecond // no overflow
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case ev, ok := <-s.ch:
			if ok {
				doc.Events = append(doc.Events, ev)
			}
		case <-t.C:
		case <-ctx.Done():
		}
	}
drain:
	for len(doc.Events) < p.Max {
		select {
		case ev, ok := <-s.ch:
			if !ok {
				break drain
			}
			doc.Events = append(doc.Events, ev)
		default:
			break drain
		}
	}
	doc.Dropped = d.c.EventsDropped()
	return doc, nil
}

// unsubscribeParams is the input of "events_unsubscribe".
type unsubscribeParams struct {
	SubscriptionID string `json:"subscription_id"`
}

func (d *Dispatcher) eventsUnsubscribe(_ context.Context, params []byte) (any, error) {
	var p unsubscribeParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	d.mu.Lock()
	ok := d.endLocked(p.SubscriptionID)
	d.mu.Unlock()
	return map[string]bool{"unsubscribed": ok}, nil
}

// queueClaimParams is the input of "queue_claim".
type queueClaimParams struct {
	Owner        string  `json:"owner"`
	Limit        int     `json:"limit"`
	LeaseSeconds float64 `json:"lease_seconds"`
	// GraceSeconds skips records due for less than this long (their event
	// was just published); 0 claims every due record.
	GraceSeconds float64 `json:"grace_seconds"`
}

// queueEntryDoc is one durable enqueue record.
type queueEntryDoc struct {
	TaskID         int64      `json:"task_id"`
	Operation      string     `json:"operation"`
	RunAt          time.Time  `json:"run_at"`
	Priority       int        `json:"priority"`
	Attempts       int        `json:"attempts"`
	Reason         string     `json:"reason,omitempty"`
	LeaseOwner     string     `json:"lease_owner,omitempty"`
	LeaseExpiresAt *time.Time `json:"lease_expires_at,omitempty"`
	CreatedAt      time.Time  `json:"created_at"`
}

func queueDocs(entries []*tasker.QueueEntry) map[string][]queueEntryDoc {
	out := make([]queueEntryDoc, len(entries))
	for i, e := range entries {
		out[i] = queueEntryDoc{TaskID: e.TaskID, Operation: e.Operation, RunAt: e.RunAt, Priority: e.Priority,
			Attempts: e.Attempts, Reason: e.Reason, LeaseOwner: e.LeaseOwner, LeaseExpiresAt: e.LeaseExpiresAt,
			CreatedAt: e.CreatedAt}
	}
	return map[string][]queueEntryDoc{"entries": out}
}

// maxQueueSeconds bounds lease_seconds and grace_seconds of queue_claim.
const maxQueueSeconds = 86400

func (d *Dispatcher) queueClaim(ctx context.Context, params []byte) (any, error) {
	var p queueClaimParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if p.Limit <= 0 || p.Limit > 1000 {
		return nil, badRequest("limit must be from 1 to 1000", map[string]any{"field": "limit"})
	}
	if p.LeaseSeconds <= 0 {
		return nil, badRequest("lease_seconds must be positive", map[string]any{"field": "lease_seconds"})
	}
	if p.GraceSeconds < 0 {
		return nil, badRequest("grace_seconds cannot be negative", map[string]any{"field": "grace_seconds"})
	}
	// Past a day the seconds would overflow time.Duration, or mean nothing.
	if p.LeaseSeconds > maxQueueSeconds || p.GraceSeconds > maxQueueSeconds {
		return nil, badRequest("lease_seconds and grace_seconds must be at most 86400 (a day)", map[string]any{"field": "lease_seconds"})
	}
	entries, err := d.w.QueueClaim(ctx, tasker.QueueClaimParams{Owner: p.Owner, Limit: p.Limit,
		Lease: time.Duration(p.LeaseSeconds * float64(time.Second)), Grace: time.Duration(p.GraceSeconds * float64(time.Second))})
	if err != nil {
		return nil, fmt.Errorf("claim queue: %w", err)
	}
	return queueDocs(entries), nil
}

func (d *Dispatcher) queueAck(ctx context.Context, params []byte) (any, error) {
	var p ownerTaskParams
	if err := decodeParams(params, &p); err != nil {
		return nil, err
	}
	if err := d.w.QueueAck(ctx, p.TaskID, p.Owner); err != nil {
		return nil, fmt.Errorf("ack queue entry: %w", err)
	}
	return map[string]bool{"ok": true}, nil
}

func (d *Dispatcher) queueList(ctx context.Context, params []byte) (any, error) {
	if err := decodeParams(params, &struct{}{}); err != nil {
		return nil, err
	}
	entries, err := d.c.Queue(ctx)
	if err != nil {
		return nil, fmt.Errorf("list queue: %w", err)
	}
	return queueDocs(entries), nil
}

// longRPCMethods may run longer than the server's write timeout: handle
// runs steps, events_poll waits up to PollWaitMax, migrate migrates.
var longRPCMethods = map[string]bool{"handle": true, "events_poll": true, "migrate": true}

// rpc serves POST /v1/rpc/{method}: the body is the method's params, the
// answer its result document (or the error document).
func (s *server) rpc(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if v := r.Header.Get(TimeoutHeader); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms <= 0 {
			s.fail(w, r, badRequest(TimeoutHeader+" must be a positive integer (milliseconds)", map[string]any{"header": TimeoutHeader}))
			return
		}
		// Past MaxCallTimeout the product would overflow time.Duration.
		ms = min(ms, MaxCallTimeout.Milliseconds())
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
		defer cancel()
	}
	body, err := readBody(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if longRPCMethods[r.PathValue("method")] {
		unboundedWrite(w)
	}
	res, err := s.dispatch.Call(ctx, r.PathValue("method"), body)
	if err != nil {
		if classify(err) != nil {
			s.fail(w, r, err)
			return
		}
		eb, status := ErrorOf(err)
		rid := requestIDFrom(r.Context())
		s.log.Error("rpc failed", "request_id", rid, "method", r.PathValue("method"), "err", err)
		eb.Message = eb.Code + " error (request id " + rid + ")"
		s.writeError(w, r, &apiError{status: status, code: eb.Code, message: eb.Message})
		return
	}
	s.writeJSON(w, r, http.StatusOK, res)
}

// validate methods name the required fields of the methods' params;
// decodeParams calls them after decoding.

func (p *taskIDParams) validate() error { return requireTaskID(p.TaskID) }

func (p *claimParams) validate() error { return cmp.Or(requireTaskID(p.TaskID), requireOwner(p.Owner)) }

func (p *reportParams) validate() error {
	return cmp.Or(requireTaskID(p.TaskID), requireOwner(p.Owner))
}

func (p *extendParams) validate() error { return requireOwner(p.Owner) }

func (p *ownerTaskParams) validate() error {
	return cmp.Or(requireTaskID(p.TaskID), requireOwner(p.Owner))
}

func (p *actorTaskParams) validate() error { return requireTaskID(p.TaskID) }

func (p *retryParams) validate() error { return requireTaskID(p.TaskID) }

func (p *queueClaimParams) validate() error { return requireOwner(p.Owner) }
