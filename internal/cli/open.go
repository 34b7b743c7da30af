package cli

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/tasker-systems/tasker"
	redactpkg "github.com/tasker-systems/tasker/internal/redact"
	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/store/postgres"
	"github.com/tasker-systems/tasker/internal/store/sqlite"
	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/taskertype"
)

// templateMode says what a command needs from the templates directory.
type templateMode int

const (
	// templatesNone: the command does not use templates (task operations).
	templatesNone templateMode = iota
	// templatesOptional: load them; the default directory may be missing.
	templatesOptional
	// templatesRequired: the directory must exist (run).
	templatesRequired
)

// loadTemplates reads the templates directory. With templatesOptional, a
// missing directory that was not asked for explicitly gives an empty
// registry. Template problems are printed to stderr, one per line, and
// returned as a usage error.
func (a *app) loadTemplates(mode templateMode) (*template.Registry, error) {
	if mode == templatesOptional && !a.templatesSet {
		if _, err := os.Stat(a.templatesDir); errors.Is(err, fs.ErrNotExist) {
			return template.NewRegistry(), nil
		}
	}
	reg, err := template.LoadDir(a.templatesDir, a.environment)
	if err != nil {
		var terrs taskertype.TemplateErrors
		if errors.As(err, &terrs) {
			printProblems(a.opts.Stderr, terrs)
			return nil, usageErrorf("%s in templates under %s", plural(len(terrs), "problem"), a.templatesDir)
		}
		if errors.Is(err, fs.ErrNotExist) {
			return nil, usageErrorf("template directory %s does not exist (set --templates or $%s)", a.templatesDir, EnvTemplates)
		}
		return nil, usageError(err)
	}
	return reg, nil
}

// printProblems writes one template problem per line.
func printProblems(w io.Writer, errs taskertype.TemplateErrors) {
	for _, e := range errs {
		fmt.Fprintln(w, oneLine(e.Error()))
	}
}

// openConfig tunes openClient.
type openConfig struct {
	templates   templateMode
	autoMigrate bool
	logger      *slog.Logger
	owner       string
	// eventEnqueue publishes task.enqueue/reenqueue events for external
	// workers instead of expecting Go runners.
	eventEnqueue bool
	// metrics receives the client's Prometheus collectors (nil: none).
	metrics prometheus.Registerer
	// traceExporter receives the client's spans (nil: none).
	traceExporter sdktrace.SpanExporter
	// retention, retentionFailed and pruneInterval are the Config's
	// retention fields (0: their defaults).
	retention, retentionFailed, pruneInterval time.Duration
}

// openClient opens a Client on the global database. Commands that do not
// use templates get an empty registry (tasker.Config has no "no templates"
// switch, so an empty temporary directory stands in for it). On PostgreSQL
// without autoMigrate, a schema with pending migrations is refused with a
// hint instead of failing later on a missing table.
func (a *app) openClient(ctx context.Context, oc openConfig) (*tasker.Client, error) {
	cfg := tasker.Config{
		DatabaseURL:          a.databaseURL,
		Environment:          a.environment,
		AutoMigrate:          oc.autoMigrate,
		EnableCommandHandler: a.enableCommand,
		HTTPAllowedHosts:     a.httpAllowedHosts,
		Owner:                cmp.Or(oc.owner, newOwner()),
		Logger:               oc.logger,
		EventEnqueue:         oc.eventEnqueue,
		Metrics:              oc.metrics,
		TraceExporter:        oc.traceExporter,
		Retention:            oc.retention,
		RetentionFailed:      oc.retentionFailed,
		PruneInterval:        oc.pruneInterval,
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(a.opts.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	dir := a.templatesDir
	if oc.templates == templatesNone {
		empty, err := os.MkdirTemp("", "tasker-no-templates-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(empty)
		dir = empty
	} else if oc.templates == templatesOptional && !a.templatesSet {
		dir = "" // tasker.Open tolerates a missing default directory
	}
	cfg.TemplatesDir = dir
	c, err := tasker.Open(ctx, cfg)
	if err != nil {
		var terrs taskertype.TemplateErrors
		if errors.As(err, &terrs) {
			printProblems(a.opts.Stderr, terrs)
			return nil, usageErrorf("%s in templates under %s", plural(len(terrs), "problem"), a.templatesDir)
		}
		return nil, fmt.Errorf("open database %s: %w", a.databaseLabel(), redactpkg.Error(err, a.databaseURL))
	}
	if c.Dialect() == "postgres" && !oc.autoMigrate {
		ms, err := c.MigrationStatus(ctx)
		if err != nil {
			_ = c.Close()
			return nil, fmt.Errorf("read migration status of %s: %w", a.databaseLabel(), redactpkg.Error(err, a.databaseURL))
		}
		if n := pending(ms); n > 0 {
			_ = c.Close()
			return nil, fmt.Errorf("database %s has %s: run `tasker migrate up` first",
				a.databaseLabel(), plural(n, "pending migration"))
		}
	}
	return c, nil
}

// openStore opens the database without migrating it (SQLite included),
// for the migrate command.
func (a *app) openStore(ctx context.Context) (store.Store, error) {
	var (
		st  store.Store
		err error
	)
	switch u := a.databaseURL; {
	case u == "":
		st, err = sqlite.Open(ctx, tasker.SQLitePathDefault)
	case strings.HasPrefix(u, "sqlite:"):
		st, err = sqlite.Open(ctx, sqlitePath(u))
	default:
		st, err = postgres.Open(ctx, u)
	}
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", a.databaseLabel(), redactpkg.Error(err, a.databaseURL))
	}
	return st, nil
}

func pending(ms []tasker.Migration) int {
	n := 0
	for _, m := range ms {
		if !m.Applied {
			n++
		}
	}
	return n
}

// databaseLabel names the database in messages, without a password.
func (a *app) databaseLabel() string {
	if a.databaseURL == "" {
		return "sqlite:" + tasker.SQLitePathDefault
	}
	return redact(a.databaseURL)
}

// redact hides every password of a database URL or connection string
// (internal/redact, the one implementation).
func redact(raw string) string { return redactpkg.DSN(raw) }

// newOwner names this process in leases and audit rows: host-pid-random.
func newOwner() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", cmp.Or(host, "host"), os.Getpid(), hex.EncodeToString(b[:]))
}

// plural renders "1 problem" / "3 problems".
func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// templateRef is a parsed NAMESPACE/NAME[@VERSION].
type templateRef struct {
	Namespace, Name, Version string
}

func (r templateRef) String() string {
	s := r.Namespace + "/" + r.Name
	if r.Version != "" {
		s += "@" + r.Version
	}
	return s
}

// parseTemplateRef reads NAMESPACE/NAME[@VERSION]; a bare NAME means the
// default namespace.
func parseTemplateRef(s string) (templateRef, error) {
	ref, version, hasVersion := strings.Cut(strings.TrimSpace(s), "@")
	ns, name, hasNS := strings.Cut(ref, "/")
	if !hasNS {
		ns, name = template.NamespaceDefault, ref
	}
	switch {
	case name == "" || ns == "" || strings.Contains(name, "/"):
		return templateRef{}, usageErrorf("template %q: want NAMESPACE/NAME[@VERSION]", s)
	case hasVersion && version == "":
		return templateRef{}, usageErrorf("template %q: empty version after @", s)
	}
	return templateRef{Namespace: ns, Name: name, Version: version}, nil
}

// lookupTemplate finds a template and, on a miss, names every loaded
// template so that the user sees what exists.
func (a *app) lookupTemplate(reg *template.Registry, ref templateRef) (*template.Template, error) {
	t, err := reg.Lookup(ref.Namespace, ref.Name, ref.Version)
	if err == nil {
		return t, nil
	}
	var nf *taskertype.TemplateNotFoundError
	if !errors.As(err, &nf) {
		return nil, usageError(err)
	}
	all := reg.List()
	if len(all) == 0 {
		return nil, usageErrorf("%v; no templates are loaded from %s", err, a.templatesDir)
	}
	keys := make([]string, 0, len(all))
	for _, t := range all {
		if !slices.Contains(nf.Available, t.Key()) {
			keys = append(keys, t.Key())
		}
	}
	if len(keys) == 0 {
		return nil, usageError(err)
	}
	return nil, usageErrorf("%v; templates loaded from %s: %s", err, a.templatesDir, strings.Join(keys, ", "))
}
