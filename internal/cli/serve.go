package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/httpapi"
	"github.com/tasker-systems/tasker/internal/metrics"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/internal/tracing/otlpenv"
	"github.com/tasker-systems/tasker/internal/ui"
)

// serveFlags are the flags of `tasker serve`.
type serveFlags struct {
	workers   int
	listen    string
	token     string
	tokenFile string
	// tokenFlagSet records a token given with --token (visible in ps).
	tokenFlagSet    bool
	migrate         bool
	shutdownTimeout time.Duration
	logLevel        string
	eventEnqueue    bool
	http            httpLimits
	// metrics serves Prometheus metrics at /metrics.
	metrics bool
	// uiOn serves the web dashboard under /ui, configured by ui.
	uiOn bool
	ui   ui.Options
	// retention, retentionFailed and pruneInterval are --retention,
	// --retention-failed and --prune-interval (see retentionConfig).
	retention, retentionFailed string
	pruneInterval              time.Duration
}

// httpLimits bound what one client can hold of the HTTP server.
type httpLimits struct {
	readHeaderTimeout time.Duration
	readTimeout       time.Duration
	writeTimeout      time.Duration
	idleTimeout       time.Duration
	maxHeaderBytes    int
	maxConnections    int
}

// Defaults of the HTTP limits (documented in docs/api.md).
const (
	// ReadHeaderTimeoutDefault bounds reading a request's headers.
	ReadHeaderTimeoutDefault = 10 * time.Second
	// ReadTimeoutDefault bounds reading a whole request, body included.
	ReadTimeoutDefault = 30 * time.Second
	// WriteTimeoutDefault bounds a request from the end of its headers to
	// the end of its answer. Long-lived endpoints (handle, events_poll,
	// migrate) set their own deadlines.
	WriteTimeoutDefault = 2 * time.Minute
	// IdleTimeoutDefault closes a keep-alive connection idle this long.
	IdleTimeoutDefault = 2 * time.Minute
	// MaxHeaderBytesDefault bounds a request's header section.
	MaxHeaderBytesDefault = 64 << 10
	// MaxConnectionsDefault bounds the connections served at once; more
	// wait in the listen backlog until one closes.
	MaxConnectionsDefault = 512
)

// Environment variables holding the API token, in order of precedence
// after the flags.
const (
	// EnvToken is the preferred variable for the API token.
	EnvToken = "TASKER_TOKEN"
)

// listenDefault is where `tasker serve` listens unless told otherwise.
const listenDefault = "127.0.0.1:8080"

func (a *app) serveCommand() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the HTTP API and a pool of workers that run queued tasks",
		Long: `Serve the HTTP JSON API (tasker.v1, under /v1) and run queued tasks with
--workers coordinators at once, until SIGINT or SIGTERM.

Listening on anything but a loopback address requires a bearer token;
without one serve refuses to start. The token is read from, in order:
--token-file (the file's first line), --token, $TASKER_TOKEN, then
$TASKER_API_TOKEN. Prefer the file or the environment: a --token on the
command line is visible to every user of the machine in ps. --listen off
(or "") runs the workers only.

Slow or idle clients are cut off: --read-header-timeout, --read-timeout
(the whole request, body included), --write-timeout (from the end of the
headers to the end of the answer; handle, events_poll and migrate set their
own) and --idle-timeout; --max-header-bytes caps the headers and
--max-connections the connections served at once (more wait until one
closes).

Prometheus metrics are served at /metrics on the same listener, behind the
same token (--metrics=false turns them off). OpenTelemetry traces are
exported over OTLP/HTTP when $OTEL_EXPORTER_OTLP_ENDPOINT (or
$OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set; see docs/observability.md.

On SIGINT or SIGTERM the server stops accepting requests, waits for the
requests in flight (up to --shutdown-timeout), then stops claiming tasks and
waits for the running ones to finish or hand their steps back.`,
		Example: `  tasker serve --database-url sqlite:tasker.db --templates examples/order_fulfillment
  tasker serve --listen :8080 --token-file /run/secrets/tasker-token --workers 8 --migrate \
      --database-url postgres://tasker@db/tasker`,
		Args: noArgs,
		RunE: wrapRun(func(cmd *cobra.Command, _ []string) error {
			var err error
			f.tokenFlagSet = cmd.Flags().Changed("token")
			if f.token, err = resolveToken(f.tokenFlagSet, f.token, f.tokenFile); err != nil {
				return err
			}
			return a.serve(cmd.Context(), &f)
		}),
	}
	fl := cmd.Flags()
	fl.IntVar(&f.workers, "workers", 4, "tasks handled at once")
	fl.StringVar(&f.listen, "listen", listenDefault, `HTTP listen address; "off" or "" runs the workers only`)
	fl.StringVar(&f.token, "token", "",
		"bearer token required by the API (visible in ps: prefer --token-file or $"+EnvToken+")")
	fl.StringVar(&f.tokenFile, "token-file", "", "file whose first line is the bearer token")
	fl.DurationVar(&f.http.readHeaderTimeout, "read-header-timeout", ReadHeaderTimeoutDefault, "how long a client may take to send a request's headers")
	fl.DurationVar(&f.http.readTimeout, "read-timeout", ReadTimeoutDefault, "how long a client may take to send a whole request, body included")
	fl.DurationVar(&f.http.writeTimeout, "write-timeout", WriteTimeoutDefault,
		"how long a request may take from the end of its headers to the end of its answer (handle, events_poll and migrate set their own)")
	fl.DurationVar(&f.http.idleTimeout, "idle-timeout", IdleTimeoutDefault, "how long a keep-alive connection may stay idle")
	fl.IntVar(&f.http.maxHeaderBytes, "max-header-bytes", MaxHeaderBytesDefault, "largest request header section, in bytes")
	fl.IntVar(&f.http.maxConnections, "max-connections", MaxConnectionsDefault, "connections served at once; more wait until one closes")
	fl.BoolVar(&f.migrate, "migrate", false, "apply pending migrations at start (SQLite is always migrated)")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long requests in flight may take at shutdown")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fl.BoolVar(&f.metrics, "metrics", true, "serve Prometheus metrics at /metrics (same listener and token as the API)")
	fl.BoolVar(&f.uiOn, "ui", true, "serve the web dashboard under /ui (same listener and token as the API)")
	fl.BoolVar(&f.ui.ReadOnly, "ui-read-only", false, "dashboard without actions: no retry, resolve or cancel")
	fl.BoolVar(&f.ui.InsecureCookie, "ui-insecure-cookie", false,
		"send the dashboard's session cookie without Secure (plain HTTP beyond loopback; prefer TLS)")
	fl.StringVar(&f.retention, "retention", "", "how long finished tasks are kept when their template has no retention "+
		"(30d, 720h or forever; default 7d); see docs/flow-control.md#retention")
	fl.StringVar(&f.retentionFailed, "retention-failed", "", "the same for failed tasks (default 30d, at least --retention)")
	fl.DurationVar(&f.pruneInterval, "prune-interval", 0, "how often finished tasks whose retention passed are deleted "+
		"(default 1m; negative: never, leaving it to tasker prune)")
	fl.BoolVar(&f.eventEnqueue, "event-enqueue", false,
		"leave queued tasks to external workers (the Ruby gem): publish task.enqueue/task.reenqueue events, run no Go coordinators, only rescue expired step leases")
	return cmd
}

func (a *app) serve(ctx context.Context, f *serveFlags) error {
	if f.workers < 1 {
		return usageErrorf("--workers must be at least 1")
	}
	if f.shutdownTimeout <= 0 {
		return usageErrorf("--shutdown-timeout must be positive")
	}
	if err := f.http.check(); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return usageErrorf("--log-level %q: want debug, info, warn or error", f.logLevel)
	}
	listen := strings.TrimSpace(f.listen)
	httpOn := listen != "" && !strings.EqualFold(listen, "off")
	if httpOn && f.token == "" && httpapi.RequireToken(listen) {
		return usageErrorf("refusing to serve the API on %s without a token: set --token-file, $%s or $%s, or listen on a loopback address such as %s",
			listen, EnvToken, EnvAPIToken, listenDefault)
	}
	// Report template problems (exit 2) before opening the database.
	if _, err := a.loadTemplates(templatesOptional); err != nil {
		return err
	}
	// Catch signals from the start: one that arrives while the database is
	// being opened shuts the server down right after start-up.
	sigCtx, stopSignals := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	log := slog.New(slog.NewTextHandler(a.opts.Stderr, &slog.HandlerOptions{Level: level}))
	owner := newOwner()

	var reg *prometheus.Registry
	if f.metrics && httpOn {
		reg = metrics.NewRegistry()
	}
	oc := openConfig{templates: templatesOptional, autoMigrate: f.migrate, logger: log, owner: owner, eventEnqueue: f.eventEnqueue}
	if err := f.retentionConfig(&oc); err != nil {
		return err
	}
	if otlpenv.Enabled() { // OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT (docs/observability.md)
		var err error
		if oc.traceExporter, err = otlpenv.ExporterFromEnv(ctx); err != nil {
			return usageErrorf("OpenTelemetry traces: %v", err)
		}
		log.Info("exporting OpenTelemetry traces over OTLP/HTTP")
	}
	if reg != nil {
		oc.metrics = reg
	}
	c, err := a.openClient(ctx, oc)
	if err != nil {
		return err
	}
	defer c.Close()
	if len(c.Templates()) == 0 {
		log.Warn("no task templates loaded", "templates", a.templatesDir)
	}

	var ln net.Listener
	if httpOn {
		if ln, err = net.Listen("tcp", listen); err != nil {
			return fmt.Errorf("listen on %s: %w", listen, err)
		}
		ln = limitListener(ln, f.http.maxConnections)
	}

	runCtx, stopRunner := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRunner()
	runDone := make(chan error, 1)
	if f.eventEnqueue {
		go func() { runDone <- rescueLoop(runCtx, c, log, cmp.Or(f.pruneInterval, tasker.PruneIntervalDefault)) }()
	} else {
		go func() { runDone <- c.Run(runCtx, f.workers) }()
	}

	var srv *http.Server
	serveDone := make(chan error, 1)
	attrs := []any{"owner", owner, "workers", f.workers, "database", a.databaseLabel(), "dialect", c.Dialect(),
		"templates", len(c.Templates())}
	if httpOn {
		if f.tokenFlagSet {
			log.Warn("the API token was given with --token, which every user of this machine can read in ps; use --token-file or $" + EnvToken)
		}
		var h http.Handler = httpapi.New(c, httpapi.Options{Token: f.token, Version: a.opts.Version, Logger: log})
		if reg != nil {
			h = metrics.Mount(h, reg, f.token)
		}
		if f.uiOn {
			f.ui.DatabaseURL, f.ui.Token, f.ui.Version, f.ui.Logger = a.databaseURL, f.token, a.opts.Version, log
			dash, err := ui.New(ctx, c, f.ui)
			if err != nil {
				return err
			}
			defer dash.Close()
			h = dash.Mount(h)
		}
		srv = newHTTPServer(h, &f.http, log)
		go func() { serveDone <- srv.Serve(ln) }()
		log.Info("tasker serving", append([]any{"listen", ln.Addr().String(), "auth", f.token != ""}, attrs...)...)
	} else {
		log.Info("tasker running workers (HTTP off)", attrs...)
	}

	var failure error
	select {
	case <-sigCtx.Done():
		log.Info("shutting down", "cause", context.Cause(sigCtx))
	case err := <-serveDone:
		failure = fmt.Errorf("HTTP server stopped: %w", err)
		log.Error("HTTP server stopped; shutting down", "err", err)
		srv = nil
	case err := <-runDone:
		// Run only returns once its context ends; anything else is a bug.
		failure = fmt.Errorf("runner stopped unexpectedly: %v", err)
		log.Error("runner stopped unexpectedly; shutting down", "err", err)
		runDone <- err
	}
	stopSignals() // a second signal kills the process

	if srv != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), f.shutdownTimeout)
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("HTTP shutdown incomplete; closing connections", "err", err)
			_ = srv.Close()
		}
		cancel()
		if err := <-serveDone; err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("HTTP server", "err", err)
		}
		log.Info("HTTP server stopped")
	}
	stopRunner()
	if err := <-runDone; err != nil && failure == nil {
		failure = fmt.Errorf("runner: %w", err)
	}
	if failure != nil {
		return failure
	}
	log.Info("stopped", "owner", owner)
	return nil
}

// rescueLoopInterval is how often `serve --event-enqueue` rescues expired
// step leases.
const rescueLoopInterval = 10 * time.Second

// rescueLoop returns steps of dead external workers to the pool and
// prunes the finished tasks whose retention passed (as Run does), until ctx
// ends; it is all that runs in Go under --event-enqueue.
func rescueLoop(ctx context.Context, c *tasker.Client, log *slog.Logger, pruneEvery time.Duration) error {
	t := time.NewTicker(rescueLoopInterval)
	defer t.Stop()
	var pruneC <-chan time.Time
	if pruneEvery > 0 {
		prune := time.NewTicker(pruneEvery)
		defer prune.Stop()
		pruneC = prune.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-pruneC:
			if rep, err := c.Prune(ctx, tasker.PruneOptions{Pause: 100 * time.Millisecond}); err != nil && ctx.Err() == nil {
				log.Warn("prune finished tasks", "err", err)
			} else if err == nil && rep.Deleted > 0 {
				log.Info("pruned finished tasks", "deleted", rep.Deleted, "batches", rep.Batches)
			}
		case <-t.C:
			if n, err := c.Worker().RescueExpired(ctx); err != nil && ctx.Err() == nil {
				log.Warn("rescue expired step leases", "err", err)
			} else if n > 0 {
				log.Info("rescued steps with expired leases", "steps", n)
			}
		}
	}
}

// check refuses limits that would disable a protection.
func (l *httpLimits) check() error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"--read-header-timeout", l.readHeaderTimeout}, {"--read-timeout", l.readTimeout},
		{"--write-timeout", l.writeTimeout}, {"--idle-timeout", l.idleTimeout}} {
		if d.v <= 0 {
			return usageErrorf("%s must be positive (got %s)", d.name, d.v)
		}
	}
	if l.maxHeaderBytes < 1024 {
		return usageErrorf("--max-header-bytes must be at least 1024 (got %d)", l.maxHeaderBytes)
	}
	if l.maxConnections < 1 {
		return usageErrorf("--max-connections must be at least 1 (got %d)", l.maxConnections)
	}
	return nil
}

// newHTTPServer returns the API server with its limits: slow, idle and
// oversized clients are cut off instead of holding a connection forever.
func newHTTPServer(h http.Handler, l *httpLimits, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: l.readHeaderTimeout,
		ReadTimeout:       l.readTimeout,
		WriteTimeout:      l.writeTimeout,
		IdleTimeout:       l.idleTimeout,
		MaxHeaderBytes:    l.maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// limitListener accepts at most n connections at once: Accept waits for a
// served connection to close, so connection n+1 stays in the kernel's
// listen backlog (the client's connect succeeds, its request waits).
func limitListener(ln net.Listener, n int) net.Listener {
	return &limitedListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{})}
}

type limitedListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// Accept implements net.Listener.
func (l *limitedListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.sem }}, nil
}

// Close implements net.Listener.
func (l *limitedListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

// Close implements net.Conn; the slot is released once.
func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// resolveToken returns the API token from, in order: the file given with
// --token-file (its first line, surrounding space removed), --token, then
// $TASKER_TOKEN and $TASKER_API_TOKEN. --token and --token-file together
// are refused.
func resolveToken(tokenFlagSet bool, tokenFlag, file string) (string, error) {
	switch {
	case file != "" && tokenFlagSet:
		return "", usageErrorf("--token and --token-file are exclusive: give one")
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", usageErrorf("--token-file: %v", err)
		}
		first, _, _ := strings.Cut(string(b), "\n")
		token := strings.TrimSpace(first)
		if token == "" {
			return "", usageErrorf("--token-file %s: the first line is empty", file)
		}
		return token, nil
	case tokenFlagSet:
		if strings.TrimSpace(tokenFlag) == "" {
			return "", usageErrorf("--token is empty")
		}
		return tokenFlag, nil
	}
	if v := os.Getenv(EnvToken); v != "" {
		return v, nil
	}
	return os.Getenv(EnvAPIToken), nil
}

// retentionConfig reads --retention, --retention-failed and
// --prune-interval into oc (empty: the engine's defaults).
func (f *serveFlags) retentionConfig(oc *openConfig) error {
	for _, r := range []struct {
		flag, v string
		dst     *time.Duration
	}{{"retention", f.retention, &oc.retention}, {"retention-failed", f.retentionFailed, &oc.retentionFailed}} {
		if r.v == "" {
			continue
		}
		secs, err := template.ParseRetention(r.v)
		if err != nil {
			return usageErrorf("--%s: %v", r.flag, err)
		}
		*r.dst = tasker.RetainForever
		if secs != template.RetentionForever {
			*r.dst = time.Duration(secs) * time.Second
		}
	}
	oc.pruneInterval = f.pruneInterval
	return nil
}
