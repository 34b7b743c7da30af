package ui

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/httpapi"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// testTemplates are the templates every test server loads.
var testTemplates = map[string]string{
	"order.yml": `name: order_fulfillment
namespace_name: shop
version: 1.0.0
description: validate, reserve and charge in parallel, then ship and notify
schema:
  type: object
  required: [order_id]
  properties:
    order_id: {type: integer}
step_templates:
  - name: validate_order
    handler_class: tasker:noop
  - name: reserve_inventory
    handler_class: tasker:noop
    depends_on_steps: [validate_order]
  - name: charge_payment
    handler_class: tasker:noop
    depends_on_steps: [validate_order]
  - name: ship_order
    handler_class: tasker:noop
    depends_on_steps: [reserve_inventory, charge_payment]
  - name: notify_customer
    handler_class: tasker:noop
    depends_on_steps: [ship_order]
`,
	"once.yml": `name: fails_once
namespace_name: test
version: 1.0.0
step_templates:
  - name: fetch
    handler_class: tasker:noop
  - name: reserve
    handler_class: tasker:noop
    depends_on_steps: [fetch]
  - name: charge
    handler_class: test:fails_once
    default_retry_limit: 1
    depends_on_steps: [fetch]
  - name: ship
    handler_class: tasker:noop
    depends_on_steps: [reserve, charge]
  - name: notify
    handler_class: tasker:noop
    depends_on_steps: [ship]
`,
}

// wideTemplate is a root, n-2 parallel steps, and a sink; with failEvery
// > 0 every failEvery-th parallel step fails for good.
func wideTemplate(n, failEvery int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: wide\nnamespace_name: big\nversion: 1.0.0\nmax_parallel_steps: 50\nstep_templates:\n")
	b.WriteString("  - name: root\n    handler_class: tasker:noop\n")
	for i := 1; i <= n-2; i++ {
		if failEvery > 0 && i%failEvery == 0 {
			fmt.Fprintf(&b, "  - name: s%05d\n    handler_class: tasker:fail\n    handler_config: {always: true, permanent: true}\n    depends_on_step: root\n", i)
			continue
		}
		fmt.Fprintf(&b, "  - name: s%05d\n    handler_class: tasker:noop\n    depends_on_step: root\n", i)
	}
	b.WriteString("  - name: sink\n    handler_class: tasker:noop\n    depends_on_steps: [")
	for i := 1; i <= n-2; i++ {
		if i > 1 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "s%05d", i)
	}
	b.WriteString("]\n")
	return b.String()
}

// env is a client and the API plus dashboard on a real HTTP server on
// 127.0.0.1.
type env struct {
	c    *tasker.Client
	srv  *httptest.Server
	url  string
	ui   *UI
	stop func()
}

type envConfig struct {
	dbURL   string
	opts    Options
	run     bool // run workers
	extra   map[string]string
	handler tasker.StepHandler // test:fails_once, default: fails each task's first attempt
}

func newEnv(t testing.TB, cfg envConfig) *env {
	t.Helper()
	dir := t.TempDir()
	for name, body := range testTemplates {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600))
	}
	for name, body := range cfg.extra {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600))
	}
	if cfg.dbURL == "" {
		cfg.dbURL = "sqlite:" + testdb.SQLitePath(t)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx := context.Background()
	c, err := tasker.Open(ctx, tasker.Config{DatabaseURL: cfg.dbURL, TemplatesDir: dir, AutoMigrate: true,
		Logger: log, PollInterval: 50 * time.Millisecond, Backoff: tasker.BackoffConfig{Base: 20 * time.Millisecond}})
	require.NoError(t, err)
	h := cfg.handler
	if h == nil {
		var mu sync.Mutex
		seen := map[int64]bool{}
		h = tasker.StepHandlerFunc(func(_ context.Context, sc *tasker.StepContext) (any, error) {
			mu.Lock()
			defer mu.Unlock()
			if !seen[sc.TaskID] {
				seen[sc.TaskID] = true
				return nil, tasker.Permanent(errors.New("card declined: the payment gateway answered 402"))
			}
			return map[string]any{"charged": true, "amount_cents": 4200}, nil
		})
	}
	c.RegisterHandler("test:fails_once", h)
	cfg.opts.DatabaseURL = cfg.dbURL
	cfg.opts.Logger = log
	cfg.opts.Version = "test"
	if cfg.opts.PollInterval == 0 {
		cfg.opts.PollInterval = 300 * time.Millisecond
	}
	u, err := New(ctx, c, cfg.opts)
	require.NoError(t, err)
	api := httpapi.New(c, httpapi.Options{Token: cfg.opts.Token, Logger: log})
	srv := httptest.NewServer(u.Mount(api))
	e := &env{c: c, srv: srv, url: srv.URL, ui: u}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	if cfg.run {
		go func() { defer close(done); _ = c.Run(runCtx, 2) }()
	} else {
		close(done)
	}
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			srv.Close()
			cancel()
			<-done
			_ = u.Close()
			_ = c.Close()
		})
	}
	t.Cleanup(e.stop)
	return e
}

// create makes a task and returns its id.
func (e *env) create(t testing.TB, ns, name string, ctxDoc string, opts ...func(*tasker.TaskRequest)) int64 {
	t.Helper()
	req := &tasker.TaskRequest{Namespace: ns, Name: name, Context: []byte(ctxDoc)}
	for _, o := range opts {
		o(req)
	}
	task, _, err := e.c.InitializeTask(context.Background(), req)
	require.NoError(t, err)
	return task.ID
}

// waitTask waits until the task is in state.
func (e *env) waitTask(t testing.TB, id int64, state tasker.TaskState) {
	t.Helper()
	require.Eventually(t, func() bool {
		d, err := e.c.Task(context.Background(), id)
		return err == nil && d.State == state
	}, 30*time.Second, 20*time.Millisecond, "task %d never reached %s", id, state)
}

// client is an HTTP client with a cookie jar that does not follow
// redirects.
func client(t testing.TB) *http.Client {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// get fetches a path and returns status and body.
func get(t testing.TB, c *http.Client, u string) (int, string, http.Header) {
	t.Helper()
	res, err := c.Get(u)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(b), res.Header
}

// post submits a form and returns status, body and headers.
func post(t testing.TB, c *http.Client, u string, form url.Values, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(b), res.Header
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([0-9a-f]+)"`)

// csrfOf returns the CSRF token of a page's form.
func csrfOf(t testing.TB, body string) string {
	t.Helper()
	m := csrfRe.FindStringSubmatch(body)
	require.NotNil(t, m, "no CSRF field in the page")
	return m[1]
}
