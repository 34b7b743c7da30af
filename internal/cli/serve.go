package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/httpapi"
)

// serveFlags are the flags of `tasker serve`.
type serveFlags struct {
	workers         int
	listen          string
	token           string
	migrate         bool
	shutdownTimeout time.Duration
	logLevel        string
	eventEnqueue    bool
}

// listenDefault is where `tasker serve` listens unless told otherwise.
const listenDefault = "127.0.0.1:8080"

func (a *app) serveCommand() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the HTTP API and a pool of workers that run queued tasks",
		Long: `Serve the HTTP JSON API (tasker.v1, under /v1) and run queued tasks with
--workers coordinators at once, until SIGINT or SIGTERM.

Listening on anything but a loopback address requires a bearer token
(--token or $TASKER_API_TOKEN); without one serve refuses to start. --listen
off (or "") runs the workers only.

On SIGINT or SIGTERM the server stops accepting requests, waits for the
requests in flight (up to --shutdown-timeout), then stops claiming tasks and
waits for the running ones to finish or hand their steps back.`,
		Example: `  tasker serve --database-url sqlite:tasker.db --templates examples/order_fulfillment
  TASKER_API_TOKEN=s3cret tasker serve --listen :8080 --workers 8 --migrate \
      --database-url postgres://tasker@db/tasker`,
		Args: noArgs,
		RunE: wrapRun(func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("token") {
				f.token = os.Getenv(EnvAPIToken)
			}
			return a.serve(cmd.Context(), &f)
		}),
	}
	fl := cmd.Flags()
	fl.IntVar(&f.workers, "workers", 4, "tasks handled at once")
	fl.StringVar(&f.listen, "listen", listenDefault, `HTTP listen address; "off" or "" runs the workers only`)
	fl.StringVar(&f.token, "token", "", "bearer token required by the API ($"+EnvAPIToken+")")
	fl.BoolVar(&f.migrate, "migrate", false, "apply pending migrations at start (SQLite is always migrated)")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long requests in flight may take at shutdown")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
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
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return usageErrorf("--log-level %q: want debug, info, warn or error", f.logLevel)
	}
	listen := strings.TrimSpace(f.listen)
	httpOn := listen != "" && !strings.EqualFold(listen, "off")
	if httpOn && f.token == "" && httpapi.RequireToken(listen) {
		return usageErrorf("refusing to serve the API on %s without a token: set --token or $%s, or listen on a loopback address such as %s",
			listen, EnvAPIToken, listenDefault)
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

	c, err := a.openClient(ctx, openConfig{templates: templatesOptional, autoMigrate: f.migrate, logger: log, owner: owner,
		eventEnqueue: f.eventEnqueue})
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
	}

	runCtx, stopRunner := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRunner()
	runDone := make(chan error, 1)
	if f.eventEnqueue {
		go func() { runDone <- rescueLoop(runCtx, c, log) }()
	} else {
		go func() { runDone <- c.Run(runCtx, f.workers) }()
	}

	var srv *http.Server
	serveDone := make(chan error, 1)
	attrs := []any{"owner", owner, "workers", f.workers, "database", a.databaseLabel(), "dialect", c.Dialect(),
		"templates", len(c.Templates())}
	if httpOn {
		srv = &http.Server{
			Handler: httpapi.New(c, httpapi.Options{Token: f.token, Version: a.opts.Version, Logger: log}),
			// Slow clients must not hold connections forever.
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}
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

// rescueLoop returns steps of dead external workers to the pool until ctx
// ends; it is all that runs in Go under --event-enqueue.
func rescueLoop(ctx context.Context, c *tasker.Client, log *slog.Logger) error {
	t := time.NewTicker(rescueLoopInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if n, err := c.RescueExpired(ctx); err != nil && ctx.Err() == nil {
				log.Warn("rescue expired step leases", "err", err)
			} else if n > 0 {
				log.Info("rescued steps with expired leases", "steps", n)
			}
		}
	}
}
