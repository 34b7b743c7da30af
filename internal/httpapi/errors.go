package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/taskertype"
)

// Error codes: the "code" of an error document. The set only grows within
// v1; clients should treat an unknown code like the HTTP status it came with.
const (
	// CodeNotFound (404): unknown task, step, template or endpoint.
	CodeNotFound = "not_found"
	// CodeInvalidRequest (400): malformed JSON, unknown field, bad parameter,
	// or a task request the engine refuses (unknown bypass step, ...).
	CodeInvalidRequest = "invalid_request"
	// CodeInvalidTemplate (400): the request named a template that fails
	// validation.
	CodeInvalidTemplate = "invalid_template"
	// CodeInvalidContext (422): the task context violates the template's
	// schema or the size limit; details.violations lists every failing path.
	CodeInvalidContext = "invalid_context"
	// CodeInvalidTransition (409): the task or step is not in a state that
	// allows the operation.
	CodeInvalidTransition = "invalid_transition"
	// CodeUnauthorized (401): missing or wrong bearer token.
	CodeUnauthorized = "unauthorized"
	// CodePayloadTooLarge (413): the request body exceeds the limit.
	CodePayloadTooLarge = "payload_too_large"
	// CodeMethodNotAllowed (405): the path exists but not with this method.
	CodeMethodNotAllowed = "method_not_allowed"
	// CodeUnavailable (503): the database does not answer (readiness probe).
	CodeUnavailable = "unavailable"
	// CodeInternal (500): anything else; the message is generic and the real
	// error is logged under the request id.
	CodeInternal = "internal"
)

// apiError is an error answered with a given status and error document.
type apiError struct {
	status  int
	code    string
	message string
	details map[string]any
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

// errorDoc is the one error shape of the protocol.
type errorDoc struct {
	Error errorBody `json:"error"`
}

type errorBody struct {
	Code    string         `json:"code"`
	Message string         `json:"message"`
	Details map[string]any `json:"details,omitempty"`
}

// violationDoc is one failing path of a task context.
type violationDoc struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// templateProblemDoc is one problem of an invalid template.
type templateProblemDoc struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Field   string `json:"field,omitempty"`
	Step    string `json:"step,omitempty"`
	Message string `json:"message"`
}

func badRequest(msg string, details map[string]any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: CodeInvalidRequest, message: msg, details: details}
}

func internalError(requestID string) *apiError {
	return &apiError{status: http.StatusInternalServerError, code: CodeInternal,
		message: "internal server error (request id " + requestID + ")"}
}

// classify maps an error of the Client (or of this package) to its answer.
// It returns nil for errors that are internal.
func classify(err error) *apiError {
	var (
		ae    *apiError
		mbe   *http.MaxBytesError
		cve   *taskertype.ContextValidationError
		tnf   *taskertype.TemplateNotFoundError
		task  *taskertype.TaskNotFoundError
		step  *taskertype.StepNotFoundError
		itr   *taskertype.InvalidTransitionError
		req   *taskertype.RequestError
		tmpls taskertype.TemplateErrors
		tmpl  *taskertype.TemplateError
	)
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &mbe):
		return &apiError{status: http.StatusRequestEntityTooLarge, code: CodePayloadTooLarge,
			message: "request body is larger than the limit", details: map[string]any{"limit_bytes": mbe.Limit}}
	case errors.As(err, &cve):
		vs := make([]violationDoc, len(cve.Violations))
		for i, v := range cve.Violations {
			vs[i] = violationDoc{Path: v.Path, Message: v.Message}
		}
		return &apiError{status: http.StatusUnprocessableEntity, code: CodeInvalidContext, message: err.Error(),
			details: map[string]any{"template": cve.Template, "violations": vs}}
	case errors.Is(err, tasker.ErrInvalidContext):
		return &apiError{status: http.StatusUnprocessableEntity, code: CodeInvalidContext, message: err.Error()}
	case errors.As(err, &tnf):
		// Available holds "namespace/name@version" keys; report versions.
		prefix := tnf.Namespace + "/" + tnf.Name + "@"
		versions := make([]string, len(tnf.Available))
		for i, k := range tnf.Available {
			versions[i] = strings.TrimPrefix(k, prefix)
		}
		d := map[string]any{"namespace": tnf.Namespace, "name": tnf.Name, "available": versions}
		if tnf.Version != "" {
			d["version"] = tnf.Version
		}
		return &apiError{status: http.StatusNotFound, code: CodeNotFound, message: err.Error(), details: d}
	case errors.As(err, &task):
		return &apiError{status: http.StatusNotFound, code: CodeNotFound, message: err.Error(),
			details: map[string]any{"task_id": task.TaskID}}
	case errors.As(err, &step):
		d := map[string]any{"task_id": step.TaskID}
		if step.Name != "" {
			d["step"] = step.Name
		} else {
			d["step_id"] = step.StepID
		}
		return &apiError{status: http.StatusNotFound, code: CodeNotFound, message: err.Error(), details: d}
	case errors.Is(err, tasker.ErrNotFound):
		return &apiError{status: http.StatusNotFound, code: CodeNotFound, message: err.Error()}
	case errors.As(err, &itr):
		return &apiError{status: http.StatusConflict, code: CodeInvalidTransition, message: err.Error(),
			details: map[string]any{"entity": itr.Entity, "id": itr.ID, "from": itr.From, "event": itr.Event}}
	case errors.Is(err, tasker.ErrInvalidTransition):
		return &apiError{status: http.StatusConflict, code: CodeInvalidTransition, message: err.Error()}
	case errors.As(err, &req):
		d := map[string]any{}
		if req.Field != "" {
			d["field"] = req.Field
		}
		if req.Step != "" {
			d["step"] = req.Step
		}
		return badRequest(err.Error(), d)
	case errors.Is(err, tasker.ErrInvalidRequest):
		return badRequest(err.Error(), nil)
	case errors.As(err, &tmpls), errors.As(err, &tmpl):
		if tmpl != nil {
			tmpls = taskertype.TemplateErrors{tmpl}
		}
		ps := make([]templateProblemDoc, len(tmpls))
		for i, p := range tmpls {
			ps[i] = templateProblemDoc{File: p.File, Line: p.Line, Field: p.Field, Step: p.Step, Message: p.Msg}
		}
		return &apiError{status: http.StatusBadRequest, code: CodeInvalidTemplate, message: err.Error(),
			details: map[string]any{"problems": ps}}
	case errors.Is(err, tasker.ErrInvalidTemplate):
		return &apiError{status: http.StatusBadRequest, code: CodeInvalidTemplate, message: err.Error()}
	}
	return nil
}

// fail answers a request with err: typed errors with their status and
// code, anything else with a generic 500 (the real error is logged).
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	ae := classify(err)
	if ae == nil {
		rid := requestIDFrom(r.Context())
		if r.Context().Err() != nil {
			s.log.Warn("http request ended by the client", "request_id", rid, "method", r.Method, "path", r.URL.Path, "err", err)
		} else {
			s.log.Error("http request failed", "request_id", rid, "method", r.Method, "path", r.URL.Path, "err", err)
		}
		ae = internalError(rid)
	}
	s.writeError(w, r, ae)
}

func (s *server) writeError(w http.ResponseWriter, r *http.Request, e *apiError) {
	s.writeJSON(w, r, e.status, errorDoc{Error: errorBody{Code: e.code, Message: e.message, Details: e.details}})
}

// writeJSON encodes v before writing anything, so that an encoding failure
// is still answered with a well-formed 500.
func (s *server) writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // responses are never HTML (nosniff is set)
	if err := enc.Encode(v); err != nil {
		rid := requestIDFrom(r.Context())
		s.log.Error("encode http response", "request_id", rid, "path", r.URL.Path, "err", err)
		status = http.StatusInternalServerError
		buf.Reset()
		_ = enc.Encode(errorDoc{Error: errorBody{Code: CodeInternal, Message: internalError(rid).message}})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}
