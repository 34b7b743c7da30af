package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
// object {"tasks": [...]}.
func (s *server) batchItems(r *http.Request) ([]json.RawMessage, error) {
	raw, err := readBody(r)
	if err != nil {
		return nil, err
	}
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
	if limit := s.opts.BatchMaxTasks; len(items) > limit {
		return nil, &apiError{status: http.StatusRequestEntityTooLarge, code: CodePayloadTooLarge,
			message: fmt.Sprintf("a batch holds at most %d task requests, got %d: split it", limit, len(items)),
			details: map[string]any{"limit_tasks": limit, "tasks": len(items)}}
	}
	return items, nil
}

// createTasks serves POST /v1/tasks/batch: every item is decoded and
// checked on its own, the valid ones are created with one
// Client.InitializeTasks call, and each item gets its own outcome. The
// answer is 200 whenever the batch was attempted, whatever the items'
// outcomes; a whole-batch error (malformed body, too many items, the
// database down before anything was written) has the single endpoint's
// error shape.
func (s *server) createTasks(w http.ResponseWriter, r *http.Request) {
	unboundedWrite(w)
	items, err := s.batchItems(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	doc := batchDoc{Results: make([]batchItemDoc, len(items))}
	reqs := make([]*tasker.TaskRequest, 0, len(items))
	at := make([]int, 0, len(items)) // at[k] is the item index of reqs[k]
	for i, raw := range items {
		doc.Results[i].Index = i
		req, err := decodeTaskRequest(raw)
		if err != nil {
			s.itemError(r, &doc.Results[i], err)
			continue
		}
		reqs, at = append(reqs, req), append(at, i)
	}
	if len(reqs) > 0 {
		ctx := tracectx.ContextWithTraceParent(r.Context(), r.Header.Get("traceparent"))
		res, err := s.c.InitializeTasks(ctx, reqs)
		if err != nil {
			if ae := classify(err); ae != nil {
				s.writeError(w, r, ae)
				return
			}
			s.log.Error("http batch create failed", "request_id", requestIDFrom(r.Context()), "tasks", len(reqs), "err", err)
			s.writeError(w, r, &apiError{status: http.StatusServiceUnavailable, code: CodeNotAttempted,
				message: "no task of the batch was written: the database failed (request id " + requestIDFrom(r.Context()) + ")"})
			return
		}
		for k, tr := range res {
			item := &doc.Results[at[k]]
			switch {
			case tr.Err != nil:
				s.itemError(r, item, tr.Err)
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
	s.writeJSON(w, r, http.StatusOK, doc)
}

// itemError fills a failed batch item with the error the single endpoint
// would have answered.
func (s *server) itemError(r *http.Request, item *batchItemDoc, err error) {
	item.Status = batchError
	var be *tasker.BatchItemError
	if errors.As(err, &be) {
		err = be.Err
	}
	ae := classify(err)
	if ae == nil {
		rid := requestIDFrom(r.Context())
		if errors.Is(err, tasker.ErrNotAttempted) {
			s.log.Warn("http batch item not written", "request_id", rid, "index", item.Index, "err", err)
			ae = &apiError{status: http.StatusServiceUnavailable, code: CodeNotAttempted,
				message: "not written: the database failed for this part of the batch (request id " + rid + ")"}
		} else {
			s.log.Error("http batch item failed", "request_id", rid, "index", item.Index, "err", err)
			ae = internalError(rid)
		}
	}
	item.HTTPStatus = ae.status
	item.Error = &errorBody{Code: ae.code, Message: ae.message, Details: ae.details}
}
