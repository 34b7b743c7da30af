package httpapi

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strings"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/tracing/tracectx"
)

// Limits of POST /v1/tasks/batch.
const (
	// BatchMaxTasksDefault is the most task requests one batch may hold
	// when Options.BatchMaxTasks is zero.
	BatchMaxTasksDefault = 5000
	// BatchMaxBodyBytesDefault bounds a batch body when
	// Options.BatchMaxBodyBytes is zero: 16 MiB.
	BatchMaxBodyBytesDefault int64 = 16 << 20
)

// batchPath is the path of the batch endpoint, which has its own body limit.
const batchPath = "/v1/tasks/batch"

// CodeNotAttempted (in a batch item, or 503 for a whole batch): the
// request was valid but not written because the database failed; sending
// it again is safe with an idempotency key.
const CodeNotAttempted = "not_attempted"

// Statuses of a batch item.
const (
	batchCreated  = "created"
	batchExisting = "existing"
	batchError    = "error"
)

// batchEnvelope is the object form of a batch body.
type batchEnvelope struct {
	Tasks []json.RawMessage `json:"tasks"`
}

// batchItemDoc is the outcome of one request of a batch: the task (without
// its steps) when created or existing, else the error document of the
// single endpoint, with the HTTP status that endpoint would have answered.
type batchItemDoc struct {
	Index      int          `json:"index"`
	Status     string       `json:"status"`
	Task       *tasker.Task `json:"task,omitempty"`
	HTTPStatus int          `json:"http_status,omitempty"`
	Error      *errorBody   `json:"error,omitempty"`
}

// batchDoc answers POST /v1/tasks/batch.
type batchDoc struct {
	Created  int            `json:"created"`
	Existing int            `json:"existing"`
	Failed   int            `json:"failed"`
	Results  []batchItemDoc `json:"results"`
}

// bodyLimit is the body limit of a request: the batch endpoint's own, or
// Options.MaxBodyBytes.
func (s *server) bodyLimit(r *http.Request) int64 {
	if r.URL.Path == batchPath {
		return max(s.opts.BatchMaxBodyBytes, s.opts.MaxBodyBytes)
	}
	return s.opts.MaxBodyBytes
}

// checkTaskRequest refuses what the create endpoints refuse before the
// engine sees a request, and normalizes a null context.
func checkTaskRequest(req *tasker.TaskRequest) *apiError {
	if strings.TrimSpace(req.Name) == "" {
		return badRequest("name is required", map[string]any{"field": "name"})
	}
	if req.Priority < math.MinInt32 || req.Priority > math.MaxInt32 {
		return badRequest("priority must fit in a 32-bit signed integer", map[string]any{"field": "priority"})
	}
	if bytes.Equal(bytes.TrimSpace(req.Context), []byte("null")) {
		req.Context = nil
	}
	return nil
}

// decodeTaskRequest decodes one task request of a batch as strictly as the
// single endpoint decodes its body.
func decodeTaskRequest(raw []byte) (*tasker.TaskRequest, error) {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil, badRequest("a task request must be a JSON object, got null", nil)
	}
	var req tasker.TaskRequest
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, jsonError(err)
	}
	if err := checkDocument(raw, &req); err != nil {
		return nil, err
	}
	if ae := checkTaskRequest(&req); ae != nil {
		return nil, ae
	}
	return &req, nil
}

// batchItems reads a batch body: a JSON array of task requests, or an
// object {"tasks": [...]}, of at most maxTasks items.
func batchItems(raw []byte, maxTasks int) ([]json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil, badRequest(`request body is required (a JSON array of task requests, or {"tasks": [...]})`, nil)
	}
	var items []json.RawMessage
	switch raw[0] {
	case '[':
		dec := json.NewDecoder(bytes.NewReader(raw))
		if err := dec.Decode(&items); err != nil {
			return nil, jsonError(err)
		}
		if err := dec.Decode(&json.RawMessage{}); !errors.Is(err, io.EOF) {
			return nil, badRequest("malformed JSON: unexpected data after the array", nil)
		}
	case '{':
		var env batchEnvelope
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&env); err != nil {
			return nil, jsonError(err)
		}
		if err := dec.Decode(&json.RawMessage{}); !errors.Is(err, io.EOF) {
			return nil, badRequest("malformed JSON: unexpected data after the request object", nil)
		}
		if env.Tasks == nil {
			return nil, badRequest(`"tasks" is required (an array of task requests)`, map[string]any{"field": "tasks"})
		}
		items = env.Tasks
	default:
		return nil, badRequest(`request body must be a JSON array of task requests or {"tasks": [...]}`, nil)
	}
	if len(items) == 0 {
		return nil, badRequest("a batch needs at least one task request", nil)
	}
	if len(items) > maxTasks {
		return nil, &apiError{status: http.StatusRequestEntityTooLarge, code: CodePayloadTooLarge,
			message: fmt.Sprintf("a batch holds at most %d task requests, got %d: split it", maxTasks, len(items)),
			details: map[string]any{"limit_tasks": maxTasks, "tasks": len(items)}}
	}
	return items, nil
}

// createTasks serves POST /v1/tasks/batch (see CreateTasks). The answer
// is 200 whenever the batch was attempted, whatever the items' outcomes; a
// whole-batch error has the single endpoint's error shape.
func (s *server) createTasks(w http.ResponseWriter, r *http.Request) {
	unboundedWrite(w)
	raw, err := readBody(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	ctx := tracectx.ContextWithTraceParent(r.Context(), r.Header.Get("traceparent"))
	doc, err := createBatch(ctx, s.c, raw, s.opts.BatchMaxTasks, s.log, requestIDFrom(r.Context()))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.writeJSON(w, r, http.StatusOK, doc)
}

// CreateTasks is POST /v1/tasks/batch for the other transports (libtasker's
// tasker_create_tasks): body is the endpoint's body, maxTasks its item limit
// (BatchMaxTasksDefault when not positive), and the result its answer
// document. Errors are whole-batch errors, classified by ErrorOf.
func CreateTasks(ctx context.Context, c *tasker.Client, body []byte, maxTasks int, log *slog.Logger) (any, error) {
	if maxTasks <= 0 {
		maxTasks = BatchMaxTasksDefault
	}
	return createBatch(ctx, c, body, maxTasks, cmp.Or(log, slog.Default()), "")
}

// createBatch decodes and checks every item on its own, creates the valid
// ones with one Client.InitializeTasks call and gives each item its own
// outcome. rid names the request in logs and internal error messages.
func createBatch(ctx context.Context, c *tasker.Client, raw []byte, maxTasks int, log *slog.Logger, rid string) (*batchDoc, error) {
	items, err := batchItems(raw, maxTasks)
	if err != nil {
		return nil, err
	}
	doc := &batchDoc{Results: make([]batchItemDoc, len(items))}
	reqs := make([]*tasker.TaskRequest, 0, len(items))
	at := make([]int, 0, len(items)) // at[k] is the item index of reqs[k]
	for i, raw := range items {
		doc.Results[i].Index = i
		req, err := decodeTaskRequest(raw)
		if err != nil {
			itemError(log, rid, &doc.Results[i], err)
			continue
		}
		reqs, at = append(reqs, req), append(at, i)
	}
	if len(reqs) > 0 {
		res, err := c.InitializeTasks(ctx, reqs)
		if err != nil {
			if classify(err) != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return nil, err
			}
			log.Error("batch create failed", "request_id", rid, "tasks", len(reqs), "err", err)
			return nil, &apiError{status: http.StatusServiceUnavailable, code: CodeNotAttempted,
				message: "no task of the batch was written: the database failed" + ridNote(rid)}
		}
		for k, tr := range res {
			item := &doc.Results[at[k]]
			switch {
			case tr.Err != nil:
				itemError(log, rid, item, tr.Err)
			case tr.Created:
				item.Status, item.Task = batchCreated, tr.Task
			default:
				item.Status, item.Task = batchExisting, tr.Task
			}
		}
	}
	for _, it := range doc.Results {
		switch it.Status {
		case batchCreated:
			doc.Created++
		case batchExisting:
			doc.Existing++
		default:
			doc.Failed++
		}
	}
	return doc, nil
}

// ridNote is " (request id X)" for a message, or "" without a request id.
func ridNote(rid string) string {
	if rid == "" {
		return ""
	}
	return " (request id " + rid + ")"
}

// itemError fills a failed batch item with the error the single endpoint
// would have answered.
func itemError(log *slog.Logger, rid string, item *batchItemDoc, err error) {
	item.Status = batchError
	var be *tasker.BatchItemError
	if errors.As(err, &be) {
		err = be.Err
	}
	ae := classify(err)
	if ae == nil {
		if errors.Is(err, tasker.ErrNotAttempted) {
			log.Warn("batch item not written", "request_id", rid, "index", item.Index, "err", err)
			ae = &apiError{status: http.StatusServiceUnavailable, code: CodeNotAttempted,
				message: "not written: the database failed for this part of the batch" + ridNote(rid)}
		} else {
			log.Error("batch item failed", "request_id", rid, "index", item.Index, "err", err)
			ae = &apiError{status: http.StatusInternalServerError, code: CodeInternal,
				message: "internal error" + ridNote(rid)}
		}
	}
	item.HTTPStatus = ae.status
	item.Error = &errorBody{Code: ae.code, Message: ae.message, Details: ae.details}
}
