// Package ui is the web dashboard that `tasker serve` mounts under /ui:
// an overview, a filtered task list, task pages with the live DAG and a
// step panel, operator actions (retry, resolve, cancel) and the templates.
// Pages are rendered on the server (html/template) with a little
// JavaScript for the graph and the live updates; every asset, the vendored
// dagre layout library included, is embedded, so the dashboard works
// offline. See docs/ui.md.
//
// Reads go through a small connection pool of the dashboard's own on the
// engine's database (aggregates and filters the store interface does not
// offer); every change goes through tasker.Client, so it passes the
// engine's state machine and is recorded with its actor.
package ui

import (
	"bytes"
	"cmp"
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tasker-systems/tasker"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Defaults of Options.
const (
	// GraphLimitDefault is the most steps a task page draws as a graph;
	// bigger tasks get a summary by state and a paged step table.
	GraphLimitDefault = 300
	// PollIntervalDefault is how often an open task page asks for changes.
	PollIntervalDefault = 2 * time.Second
	// StepPageSize is the rows of one page of the step table.
	StepPageSize = 100
)

// Options configures the dashboard.
type Options struct {
	// ReadOnly hides and refuses the actions.
	ReadOnly bool
	// InsecureCookie drops the Secure attribute of the session cookie, for
	// a server reached over plain HTTP beyond loopback (not recommended:
	// put TLS in front instead).
	InsecureCookie bool

	// DatabaseURL is the engine's database ("" is the SQLite default).
	DatabaseURL string
	// Token is the API token. When set, the dashboard needs a login with
	// it (or the API's bearer header).
	Token string
	// Version is shown in the footer.
	Version string
	// Logger receives internal errors; nil means slog.Default().
	Logger *slog.Logger
	// GraphLimit and PollInterval default to GraphLimitDefault and
	// PollIntervalDefault.
	GraphLimit   int
	PollInterval time.Duration
}

// UI is the dashboard's http.Handler, serving paths under /ui.
type UI struct {
	c     *tasker.Client
	db    *db
	opts  Options
	log   *slog.Logger
	mux   *http.ServeMux
	pages map[string]*template.Template
	token []byte
	key   []byte

	// The overview is shared for overviewTTL: viewers refreshing it at
	// once cost one set of queries.
	ovMu sync.Mutex
	ov   *overview
	ovAt time.Time
}

// overviewTTL is how long one reading of the overview is served.
const overviewTTL = 2 * time.Second

// overview returns the overview's numbers, read at most every overviewTTL.
func (u *UI) overview(ctx context.Context) (*overview, error) {
	u.ovMu.Lock()
	defer u.ovMu.Unlock()
	if u.ov != nil && time.Since(u.ovAt) < overviewTTL {
		return u.ov, nil
	}
	o, err := u.db.overview(ctx, time.Now())
	if err != nil {
		return nil, err
	}
	u.ov, u.ovAt = o, time.Now()
	return o, nil
}

// New opens the dashboard's read pool and returns its handler. Close it
// when done.
func New(ctx context.Context, c *tasker.Client, opts Options) (*UI, error) {
	d, err := openDB(ctx, opts.DatabaseURL)
	if err != nil {
		return nil, err
	}
	if opts.GraphLimit <= 0 {
		opts.GraphLimit = GraphLimitDefault
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = PollIntervalDefault
	}
	u := &UI{c: c, db: d, opts: opts, log: cmp.Or(opts.Logger, slog.Default()), mux: http.NewServeMux(),
		key: sessionKey(opts.Token)}
	if opts.Token != "" {
		u.token = []byte(opts.Token)
	}
	if u.pages, err = parsePages(); err != nil {
		_ = d.close()
		return nil, err
	}
	u.routes()
	return u, nil
}

// Close releases the dashboard's database connections.
func (u *UI) Close() error { return u.db.close() }

// Mount returns a handler serving the dashboard under /ui and every
// other path with api.
func (u *UI) Mount(api http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ui" || strings.HasPrefix(r.URL.Path, "/ui/") {
			u.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

func (u *UI) routes() {
	u.mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/", http.StatusSeeOther)
	})
	u.mux.HandleFunc("GET /ui/{$}", u.page(u.overviewPage))
	u.mux.HandleFunc("GET /ui/overview/fragment", u.page(u.overviewFragment))
	u.mux.HandleFunc("GET /ui/tasks", u.page(u.tasksPage))
	u.mux.HandleFunc("GET /ui/tasks/{id}", u.page(u.taskPage))
	u.mux.HandleFunc("GET /ui/tasks/{id}/live", u.page(u.taskLive))
	u.mux.HandleFunc("GET /ui/tasks/{id}/fragments", u.page(u.taskFragments))
	u.mux.HandleFunc("GET /ui/tasks/{id}/confirm", u.page(u.confirmPage))
	u.mux.HandleFunc("POST /ui/tasks/{id}/actions", u.page(u.taskAction))
	u.mux.HandleFunc("GET /ui/templates", u.page(u.templatesPage))
	u.mux.HandleFunc("GET /ui/templates/{namespace}/{name}/{version}", u.page(u.templatePage))
	u.mux.HandleFunc("GET /ui/login", u.loginPage)
	u.mux.HandleFunc("POST /ui/login", u.login)
	u.mux.HandleFunc("POST /ui/logout", u.logout)
	static, _ := fs.Sub(staticFS, "static")
	u.mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", staticHandler(http.FileServerFS(static))))
}

// staticHandler lets browsers cache the embedded assets for a while.
func staticHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		h.ServeHTTP(w, r)
	})
}

// maxFormBytes bounds a dashboard request body (its forms are small).
const maxFormBytes = 64 << 10

// contentSecurityPolicy allows the dashboard's own scripts, styles and
// images only: no inline script, nothing from elsewhere, no framing.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// ServeHTTP implements http.Handler.
func (u *UI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			u.log.Error("dashboard handler panicked", "path", r.URL.Path, "panic", p)
			http.Error(w, "internal error", http.StatusInternalServerError)
		}
	}()
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	}
	if _, pattern := u.mux.Handler(r); pattern == "" {
		u.notFound(w, r)
		return
	}
	u.mux.ServeHTTP(w, r)
}

// request is what a page handler gets besides the response writer.
type request struct {
	*http.Request
	sess *session
	// bearer is true when the request carried the API token as a bearer
	// header (no session, no CSRF token needed).
	bearer bool
}

// pageFunc is a dashboard handler behind authentication (and CSRF checks
// for POST).
type pageFunc func(w http.ResponseWriter, r *request) error

// httpError is an error with the status to answer.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func notFound(msg string) error { return &httpError{status: http.StatusNotFound, msg: msg} }

func badRequest(msg string) error { return &httpError{status: http.StatusBadRequest, msg: msg} }

// page wraps a handler with the session, authentication and CSRF checks.
func (u *UI) page(fn pageFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		req := &request{Request: r, sess: u.readSession(r), bearer: u.bearerOK(r)}
		if u.token != nil && !req.bearer && (req.sess == nil || !req.sess.Auth) {
			if r.Method == http.MethodGet && !strings.HasSuffix(r.URL.Path, "/live") &&
				!strings.HasSuffix(r.URL.Path, "/fragments") && !strings.HasSuffix(r.URL.Path, "/fragment") {
				http.Redirect(w, r, "/ui/login?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
				return
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="tasker"`)
			http.Error(w, "login required", http.StatusUnauthorized)
			return
		}
		if req.sess == nil && !req.bearer {
			// No login needed (loopback without a token): an anonymous
			// session still carries the CSRF token of the forms.
			req.sess = &session{ID: newSessionID(), Exp: time.Now().Add(SessionTTL).Unix()}
			u.setSession(w, req.sess)
		}
		if r.Method == http.MethodPost && !req.bearer && !u.checkCSRF(r, req.sess) {
			http.Error(w, "invalid or missing CSRF token: reload the page and try again", http.StatusForbidden)
			return
		}
		if err := fn(w, req); err != nil {
			u.fail(w, r, err)
		}
	}
}

// fail answers an error: its own status for an httpError, else 500 with
// the error logged.
func (u *UI) fail(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	if errors.As(err, &he) {
		u.renderError(w, r, he.status, he.msg)
		return
	}
	if errors.Is(err, context.Canceled) {
		return
	}
	u.log.Error("dashboard request failed", "path", r.URL.Path, "err", err)
	u.renderError(w, r, http.StatusInternalServerError, "internal error; the server log has the details")
}

func (u *UI) notFound(w http.ResponseWriter, r *http.Request) {
	u.renderError(w, r, http.StatusNotFound, "no such page: "+r.URL.Path)
}

func (u *UI) renderError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	var buf bytes.Buffer
	if err := u.pages["error"].ExecuteTemplate(&buf, "layout", u.view(r, nil, "Error", map[string]any{
		"Status": status, "Message": msg})); err != nil {
		http.Error(w, msg, status)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
}

// view is what every page template receives.
type view struct {
	Title    string
	Nav      string
	CSRF     string
	ReadOnly bool
	Auth     bool // a login is in use (show the logout button)
	Who      string
	Version  string
	Now      time.Time
	Data     any
}

func (u *UI) view(r *http.Request, s *session, title string, data any) *view {
	v := &view{Title: title, ReadOnly: u.opts.ReadOnly, Auth: u.token != nil && s != nil && s.Auth,
		Version: u.opts.Version, Now: time.Now().UTC(), Data: data, CSRF: u.csrfToken(s)}
	if s != nil {
		v.Who = s.Who
	}
	switch {
	case strings.HasPrefix(r.URL.Path, "/ui/tasks"):
		v.Nav = "tasks"
	case strings.HasPrefix(r.URL.Path, "/ui/templates"):
		v.Nav = "templates"
	default:
		v.Nav = "overview"
	}
	return v
}

// render executes a page in the layout.
func (u *UI) render(w http.ResponseWriter, r *request, name, title string, data any) error {
	var buf bytes.Buffer
	if err := u.pages[name].ExecuteTemplate(&buf, "layout", u.view(r.Request, r.sess, title, data)); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, err := buf.WriteTo(w)
	return err
}

// fragment executes one named template of a page into a string.
func (u *UI) fragment(r *request, page, name string, data any) (string, error) {
	var buf bytes.Buffer
	if err := u.pages[page].ExecuteTemplate(&buf, name, u.view(r.Request, r.sess, "", data)); err != nil {
		return "", err
	}
	return buf.String(), nil
}
