package httpapi

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/tracing/tracectx"
	"github.com/tasker-systems/tasker/taskertype"
)

// List limits of GET /v1/tasks.
const (
	// ListLimitDefault is the page size when limit is omitted.
	ListLimitDefault = 50
	// ListLimitMax is the largest accepted limit.
	ListLimitMax = 500
)

// readyTimeout bounds the readiness probe's database round trip.
const readyTimeout = 3 * time.Second

// taskDoc answers create, get and cancel: the task with its steps.
type taskDoc struct {
	Task    *tasker.TaskDetail `json:"task"`
	Created *bool              `json:"created,omitempty"`
}

// taskListDoc answers GET /v1/tasks.
type taskListDoc struct {
	Tasks       []*tasker.Task `json:"tasks"`
	NextAfterID *int64         `json:"next_after_id"`
}

// explainDoc answers GET /v1/tasks/{id}/explain.
type explainDoc struct {
	TaskID int64                   `json:"task_id"`
	Status tasker.TaskState        `json:"status"`
	Steps  []*tasker.StepReadiness `json:"steps"`
}

// transitionsDoc answers GET /v1/tasks/{id}/transitions.
type transitionsDoc struct {
	Task  []*tasker.Transition `json:"task"`
	Steps []*tasker.Transition `json:"steps"`
}

// handleDoc answers POST /v1/tasks/{id}/handle: the HandleResult plus
// whether another handle call is due.
type handleDoc struct {
	*tasker.HandleResult
	// Finalized is true when no further handle call is due: the task ended,
	// is blocked or in error, or another coordinator owns its running steps.
	Finalized bool `json:"finalized"`
}

// actorBody is the body of cancel and resolve.
type actorBody struct {
	Actor  string `json:"actor"`
	Reason string `json:"reason"`
}

// retryBody is the body of retry.
type retryBody struct {
	Steps  []string `json:"steps"`
	Actor  string   `json:"actor"`
	Reason string   `json:"reason"`
}

// statusDoc answers the health endpoints.
type statusDoc struct {
	Status string     `json:"status"`
	Error  *errorBody `json:"error,omitempty"`
}

// infoDoc answers GET /v1/info.
type infoDoc struct {
	Protocol string `json:"protocol"`
	Version  string `json:"version"`
	Dialect  string `json:"dialect"`
}

func (s *server) live(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, r, http.StatusOK, statusDoc{Status: "ok"})
}

func (s *server) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
	defer cancel()
	if _, err := s.c.ListTasks(ctx, &tasker.TaskFilter{Limit: 1}); err != nil {
		s.log.Warn("readiness probe: database does not answer", "request_id", requestIDFrom(r.Context()), "err", err)
		s.writeJSON(w, r, http.StatusServiceUnavailable, statusDoc{Status: "unavailable",
			Error: &errorBody{Code: CodeUnavailable, Message: "the database does not answer"}})
		return
	}
	s.writeJSON(w, r, http.StatusOK, statusDoc{Status: "ok"})
}

func (s *server) info(w http.ResponseWriter, r *http.Request) {
	s.writeJSON(w, r, http.StatusOK, infoDoc{Protocol: Protocol, Version: s.opts.Version, Dialect: s.c.Dialect()})
}

// taskID reads the {id} path parameter.
func taskID(r *http.Request) (int64, error) {
	raw := r.PathValue("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		return 0, badRequest("task id must be a positive integer, got "+strconv.Quote(raw), map[string]any{"parameter": "id"})
	}
	return id, nil
}

func (s *server) createTask(w http.ResponseWriter, r *http.Request) {
	var req tasker.TaskRequest
	if err := decodeBody(r, &req, true); err != nil {
		s.fail(w, r, err)
		return
	}
	if ae := checkTaskRequest(&req); ae != nil {
		s.fail(w, r, ae)
		return
	}
	// A W3C traceparent header puts the task in the caller's trace.
	task, created, err := s.c.InitializeTask(tracectx.ContextWithTraceParent(r.Context(), r.Header.Get("traceparent")), &req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	detail, err := s.c.Task(r.Context(), task.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	w.Header().Set("Location", "/v1/tasks/"+strconv.FormatInt(task.ID, 10))
	s.writeJSON(w, r, status, taskDoc{Task: detail, Created: &created})
}

func (s *server) getTask(w http.ResponseWriter, r *http.Request) {
	id, err := taskID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeTask(w, r, id)
}

func (s *server) listTasks(w http.ResponseWriter, r *http.Request) {
	q, perr := parseQuery(r, []string{"state", "namespace", "name", "created_after", "created_before", "limit", "after_id"}, "state")
	if perr != nil {
		s.fail(w, r, perr)
		return
	}
	f := &tasker.TaskFilter{Namespace: q.get("namespace"), Name: q.get("name"), Limit: ListLimitDefault}
	for _, v := range q.v["state"] {
		for st := range strings.SplitSeq(v, ",") {
			st = strings.TrimSpace(st)
			if st == "" {
				continue
			}
			if !slices.Contains(taskertype.TaskStates(), tasker.TaskState(st)) {
				q.invalid("state", "unknown task state "+strconv.Quote(st))
			}
			f.States = append(f.States, tasker.TaskState(st))
		}
	}
	for _, k := range []string{"created_after", "created_before"} {
		v := q.get(k)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			q.invalid(k, "expected an RFC 3339 time such as 2026-01-02T15:04:05Z, got "+strconv.Quote(v))
			continue
		}
		if k == "created_after" {
			f.CreatedAfter = &t
		} else {
			f.CreatedBefore = &t
		}
	}
	if v := q.get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > ListLimitMax {
			q.invalid("limit", "expected an integer from 1 to "+strconv.Itoa(ListLimitMax)+", got "+strconv.Quote(v))
		}
		f.Limit = n
	}
	if v := q.get("after_id"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			q.invalid("after_id", "expected a positive task id, got "+strconv.Quote(v))
		}
		f.AfterID = n
	}
	if q.err != nil {
		s.fail(w, r, q.err)
		return
	}
	limit := f.Limit
	f.Limit++ // one more than asked tells whether another page exists
	tasks, err := s.c.ListTasks(r.Context(), f)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	doc := taskListDoc{Tasks: tasks}
	if len(tasks) > limit {
		doc.Tasks = tasks[:limit]
		next := doc.Tasks[limit-1].ID
		doc.NextAfterID = &next
	}
	if doc.Tasks == nil {
		doc.Tasks = []*tasker.Task{}
	}
	s.writeJSON(w, r, http.StatusOK, doc)
}

func (s *server) explainTask(w http.ResponseWriter, r *http.Request) {
	id, err := taskID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	doc, err := explainDocument(r.Context(), s.c, id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, doc)
}

// explainDocument is task id's explanation: its state and, per step, why
// it is or is not running (GET /v1/tasks/{id}/explain and the RPC method
// "explain").
func explainDocument(ctx context.Context, c *tasker.Client, id int64) (*explainDoc, error) {
	steps, err := c.Explain(ctx, id)
	if err != nil {
		return nil, err
	}
	detail, err := c.Task(ctx, id)
	if err != nil {
		return nil, err
	}
	if steps == nil {
		steps = []*tasker.StepReadiness{}
	}
	return &explainDoc{TaskID: id, Status: detail.State, Steps: steps}, nil
}

func (s *server) taskTransitions(w http.ResponseWriter, r *http.Request) {
	id, err := taskID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	task, steps, err := s.c.Transitions(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	doc := transitionsDoc{Task: task, Steps: steps}
	if doc.Task == nil {
		doc.Task = []*tasker.Transition{}
	}
	if doc.Steps == nil {
		doc.Steps = []*tasker.Transition{}
	}
	s.writeJSON(w, r, http.StatusOK, doc)
}

func (s *server) handleTask(w http.ResponseWriter, r *http.Request) {
	id, err := taskID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if err := decodeBody(r, &struct{}{}, false); err != nil {
		s.fail(w, r, err)
		return
	}
	unboundedWrite(w)
	// The request context bounds the call: when the client goes away the
	// coordinator stops claiming steps, lets in-flight ones finish within
	// the engine's shutdown grace and hands the task back to the queue.
	res, err := s.c.Handle(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, handleDoc{HandleResult: res, Finalized: res.Finalized()})
}

func (s *server) cancelTask(w http.ResponseWriter, r *http.Request) {
	s.taskOperation(w, r, s.c.CancelTask)
}

func (s *server) resolveTask(w http.ResponseWriter, r *http.Request) {
	s.taskOperation(w, r, s.c.ResolveTask)
}

// taskOperation runs an operator operation on the task named by the path,
// with the actor and reason of the body, and answers with the task.
func (s *server) taskOperation(w http.ResponseWriter, r *http.Request,
	op func(context.Context, int64, tasker.Actor) (*tasker.Task, error)) {
	id, err := taskID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var body actorBody
	if err := decodeBody(r, &body, false); err != nil {
		s.fail(w, r, err)
		return
	}
	if _, err := op(r.Context(), id, tasker.Actor{Who: body.Actor, Reason: body.Reason}); err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeTask(w, r, id)
}

func (s *server) retryTask(w http.ResponseWriter, r *http.Request) {
	id, err := taskID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var body retryBody
	if err := decodeBody(r, &body, false); err != nil {
		s.fail(w, r, err)
		return
	}
	// Duplicate names would make the engine report a spurious conflict.
	var names []string
	for _, n := range body.Steps {
		if strings.TrimSpace(n) == "" {
			s.fail(w, r, badRequest("steps: step names cannot be empty", map[string]any{"field": "steps"}))
			return
		}
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	retried, err := s.c.RetrySteps(r.Context(), id, names, tasker.Actor{Who: body.Actor, Reason: body.Reason})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if retried == nil {
		retried = []string{}
	}
	s.writeJSON(w, r, http.StatusOK, map[string][]string{"retried": retried})
}

func (s *server) resolveStep(w http.ResponseWriter, r *http.Request) {
	id, err := taskID(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var body actorBody
	if err := decodeBody(r, &body, false); err != nil {
		s.fail(w, r, err)
		return
	}
	step, err := s.c.ResolveStep(r.Context(), id, r.PathValue("name"), tasker.Actor{Who: body.Actor, Reason: body.Reason})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, map[string]*tasker.Step{"step": step})
}

// writeTask answers 200 with the task's current document.
func (s *server) writeTask(w http.ResponseWriter, r *http.Request, id int64) {
	detail, err := s.c.Task(r.Context(), id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, taskDoc{Task: detail})
}
