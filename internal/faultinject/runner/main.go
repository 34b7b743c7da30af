// Command runner is one runner process of the fault-injection harness. It
// uses only Tasker's public Go API: it opens a client on PostgreSQL,
// registers the harness handler (which appends to the shared handler log)
// and runs the durable queue until SIGTERM or SIGINT, then shuts down
// gracefully. The harness also SIGKILLs it at random.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/faultinject"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "runner:", err)
		os.Exit(1)
	}
}

func run() error {
	dbURL := flag.String("db", "", "PostgreSQL URL")
	logPath := flag.String("log", "", "handler log (appended to)")
	templates := flag.String("templates", "", "templates directory")
	owner := flag.String("owner", "", "lease owner name")
	workers := flag.Int("workers", 6, "concurrent tasks")
	eventMode := flag.Bool("event-enqueue", false, "use the event-based enqueue handler and log every delivered enqueue event")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := faultinject.RunnerConfig(*dbURL, *templates, *owner, *eventMode)
	cfg.Logger = logger
	var c *tasker.Client
	var err error
	// The database may be restarting when we start: retry with backoff.
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		if c, err = tasker.Open(ctx, cfg); err == nil {
			break
		}
		logger.Warn("open; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	hlog, err := faultinject.OpenLog(*logPath)
	if err != nil {
		return err
	}
	defer hlog.Close()
	// Cron checks (faultinject.CheckTicks) date this process's scheduler
	// from this record: Run starts it right after.
	if err := hlog.Append(faultinject.Record{Ev: faultinject.RecUp, Owner: *owner}); err != nil {
		return err
	}
	c.RegisterHandler(faultinject.HandlerClass, &faultinject.Handler{Log: hlog, Owner: *owner})
	stopEvents := func() {}
	if *eventMode {
		events, cancel := c.Subscribe(tasker.EventKind("task.enqueue"), tasker.EventKind("task.reenqueue"))
		done := make(chan struct{})
		go func() {
			defer close(done)
			for ev := range events {
				// T is the delivery time (ev.Time may precede the commit).
				_ = hlog.Append(faultinject.Record{Ev: faultinject.RecEnqueue, Task: ev.TaskID, Owner: *owner, Out: string(ev.Kind)})
			}
		}()
		stopEvents = func() { cancel(); <-done }
	}
	runErr := c.Run(ctx, *workers)
	if err := c.Close(); err != nil && runErr == nil {
		runErr = err
	}
	stopEvents()
	if n := c.EventsDropped(); n > 0 {
		_ = hlog.Append(faultinject.Record{Ev: faultinject.RecDropped, Owner: *owner, Out: strconv.FormatInt(n, 10)})
	}
	return runErr
}
