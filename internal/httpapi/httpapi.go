// Package httpapi is the HTTP JSON API that `tasker serve` mounts: protocol
// "tasker.v1", documented in docs/api.md.
//
// Every path of the protocol starts with /v1 and every response, errors
// included, is a JSON document. Within v1 only additive changes are made:
// new endpoints, new optional request fields, new response fields. Clients
// must ignore response fields they do not know; the server rejects request
// fields it does not know, so that a misspelled field is an error rather
// than silently ignored.
//
// The same documents are spoken by other transports (the Ruby gem's socket
// transport), so the request and response shapes here are the protocol, not
// an implementation detail: change them only additively.
package httpapi

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/jsonvalid"
)

// Protocol is the protocol name reported by GET /v1/info.
const Protocol = "tasker.v1"

// DefaultMaxBodyBytes is the request body limit used when
// Options.MaxBodyBytes is zero or negative: 1 MiB.
const DefaultMaxBodyBytes int64 = 1 << 20

// RequestIDHeader is the response header carrying the request id. A client
// may send its own (1 to 128 characters among letters, digits, '.', '_',
// ':' and '-'); otherwise the server makes one up.
const RequestIDHeader = "X-Request-Id"

// Options configures the handler returned by New.
type Options struct {
	// Token is the bearer token. When non-empty every /v1 request needs the
	// header "Authorization: Bearer <token>"; the health endpoints stay open.
	Token string
	// MaxBodyBytes bounds request bodies; a larger body is answered with 413.
	// Zero or negative means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// BatchMaxTasks bounds the task requests of POST /v1/tasks/batch (413
	// beyond). Zero or negative means BatchMaxTasksDefault.
	BatchMaxTasks int
	// BatchMaxBodyBytes bounds the body of POST /v1/tasks/batch (at least
	// MaxBodyBytes). Zero or negative means BatchMaxBodyBytesDefault.
	BatchMaxBodyBytes int64
	// Version is the server version string reported by GET /v1/info.
	Version string
	// Logger receives request logs (debug) and internal errors (error).
	// Nil means slog.Default().
	Logger *slog.Logger
}

// server is the http.Handler returned by New.
type server struct {
	c     *tasker.Client
	opts  Options
	log   *slog.Logger
	mux   *http.ServeMux
	token []byte
	// dispatch serves POST /v1/rpc/{method} (pull.go).
	dispatch *Dispatcher
}

// New returns the HTTP handler of the API, serving c. The handler is safe
// for concurrent use.
func New(c *tasker.Client, opts Options) http.Handler {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.BatchMaxTasks <= 0 {
		opts.BatchMaxTasks = BatchMaxTasksDefault
	}
	if opts.BatchMaxBodyBytes <= 0 {
		opts.BatchMaxBodyBytes = BatchMaxBodyBytesDefault
	}
	s := &server{c: c, opts: opts, log: cmp.Or(opts.Logger, slog.Default()), mux: http.NewServeMux(),
		dispatch: NewDispatcher(c, opts.Version)}
	if opts.Token != "" {
		s.token = []byte(opts.Token)
	}
	s.routes()
	return s
}

// routes registers every endpoint. Patterns with "GET" also answer HEAD.
func (s *server) routes() {
	s.mux.HandleFunc("GET /health/live", s.live)
	s.mux.HandleFunc("GET /health/ready", s.ready)

	s.mux.HandleFunc("GET /v1/info", s.info)

	s.mux.HandleFunc("POST /v1/tasks", s.createTask)
	s.mux.HandleFunc("POST "+batchPath, s.createTasks)
	s.mux.HandleFunc("GET /v1/tasks", s.listTasks)
	s.mux.HandleFunc("GET /v1/tasks/{id}", s.getTask)
	s.mux.HandleFunc("GET /v1/tasks/{id}/explain", s.explainTask)
	s.mux.HandleFunc("GET /v1/tasks/{id}/transitions", s.taskTransitions)
	s.mux.HandleFunc("POST /v1/tasks/{id}/handle", s.handleTask)
	s.mux.HandleFunc("POST /v1/tasks/{id}/cancel", s.cancelTask)
	s.mux.HandleFunc("POST /v1/tasks/{id}/retry", s.retryTask)
	s.mux.HandleFunc("POST /v1/tasks/{id}/resolve", s.resolveTask)
	s.mux.HandleFunc("POST /v1/tasks/{id}/steps/{name}/resolve", s.resolveStep)

	s.mux.HandleFunc("GET /v1/templates", s.listTemplates)
	s.mux.HandleFunc("GET /v1/templates/{namespace}/{name}", s.getTemplate)
	s.mux.HandleFunc("GET /v1/schedules", s.listSchedules)

	s.mux.HandleFunc("POST /v1/rpc/{method}", s.rpc)
}

type ctxKey struct{}

// requestIDFrom returns the request id stored by ServeHTTP.
func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// ServeHTTP implements http.Handler: request id, panic recovery, auth, body
// limit, then routing with JSON answers for unknown routes and methods.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rid := requestID(r.Header.Get(RequestIDHeader))
	h := w.Header()
	h.Set(RequestIDHeader, rid)
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, rid))
	sw := &statusWriter{ResponseWriter: w}

	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			s.log.Error("http handler panicked", "request_id", rid, "method", r.Method, "path", r.URL.Path, "panic", p)
			if sw.status == 0 {
				s.writeError(sw, r, internalError(rid))
			}
		}
		s.log.Debug("http request", "request_id", rid, "method", r.Method, "path", r.URL.Path,
			"status", sw.code(), "duration_ms", time.Since(start).Milliseconds())
	}()

	if r.URL.Path == "/v1" || strings.HasPrefix(r.URL.Path, "/v1/") {
		if err := s.authorize(sw, r); err != nil {
			s.writeError(sw, r, err)
			return
		}
	}
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, s.bodyLimit(r))
	}
	if !cleanPath(r.URL.Path) {
		s.writeError(sw, r, notFoundRoute(r))
		return
	}
	// Path values (a step name) reach the database: refuse what it cannot
	// store, as for bodies.
	if jsonvalid.CheckString(r.URL.Path) != nil {
		s.writeError(sw, r, badRequest("the path must be valid UTF-8 without NUL (%00)", nil))
		return
	}
	if _, pattern := s.mux.Handler(r); pattern == "" {
		s.noRoute(sw, r)
		return
	}
	s.mux.ServeHTTP(sw, r)
}

// noRoute answers a request no pattern matches: 405 when the path exists
// with other methods (with the Allow header the mux computed), else 404.
func (s *server) noRoute(w http.ResponseWriter, r *http.Request) {
	h, _ := s.mux.Handler(r)
	cw := &captureWriter{header: http.Header{}}
	h.ServeHTTP(cw, r)
	if cw.status == http.StatusMethodNotAllowed {
		allow := cw.header.Get("Allow")
		w.Header().Set("Allow", allow)
		s.writeError(w, r, &apiError{status: http.StatusMethodNotAllowed, code: CodeMethodNotAllowed,
			message: "method " + r.Method + " is not allowed on " + r.URL.Path,
			details: map[string]any{"allow": splitAllow(allow)}})
		return
	}
	s.writeError(w, r, notFoundRoute(r))
}

func notFoundRoute(r *http.Request) *apiError {
	return &apiError{status: http.StatusNotFound, code: CodeNotFound, message: "no such endpoint: " + r.Method + " " + r.URL.Path}
}

func splitAllow(allow string) []string {
	out := []string{}
	for m := range strings.SplitSeq(allow, ",") {
		if m = strings.TrimSpace(m); m != "" {
			out = append(out, m)
		}
	}
	return out
}

// cleanPath reports whether p is canonical (no "//", "." or ".." elements);
// the mux would otherwise answer with a redirect.
func cleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c == p
}

// requestID returns the client's id when it is safe to echo, else a new one.
func requestID(given string) string {
	if n := len(given); n > 0 && n <= 128 {
		ok := true
		for _, ch := range given {
			if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || strings.ContainsRune("._:-", ch)) {
				ok = false
				break
			}
		}
		if ok {
			return given
		}
	}
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// statusWriter remembers the status written through it.
type statusWriter struct {
	http.ResponseWriter
	status int
}

// WriteHeader implements http.ResponseWriter.
func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *statusWriter) code() int { return cmp.Or(w.status, http.StatusOK) }

// captureWriter records what the mux's own 404/405 handlers would write.
type captureWriter struct {
	header http.Header
	status int
}

func (w *captureWriter) Header() http.Header { return w.header }

func (w *captureWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(b), nil
}

func (w *captureWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
