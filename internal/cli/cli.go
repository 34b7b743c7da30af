// Package cli implements the tasker command: running tasks from templates
// in the foreground, inspecting and operating on stored tasks, validating
// and drawing templates, migrating the database and serving the HTTP API
// with a runner. cmd/tasker is a thin main around Main.
//
// # Exit codes
//
//   - 0: success (for run: the task completed).
//   - 1: the operation failed, or the task ended in error or blocked.
//   - 2: bad usage, a template problem or a task context the template
//     rejects.
//
// Every error is printed as one line "tasker: <message>" on standard error;
// lists of template problems print one problem per line before it.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tasker-systems/tasker"
	redactpkg "github.com/tasker-systems/tasker/internal/redact"
)

// Exit codes returned by Main.
const (
	// ExitOK means success.
	ExitOK = 0
	// ExitFailed means the operation failed or the task did not complete.
	ExitFailed = 1
	// ExitUsage means bad input: flags, arguments, templates or context.
	ExitUsage = 2
)

// Environment variables read by the global flags.
const (
	EnvDatabaseURL   = "TASKER_DATABASE_URL"
	EnvTemplates     = "TASKER_TEMPLATES"
	EnvEnvironment   = "TASKER_ENV"
	EnvEnableCommand = "TASKER_ENABLE_COMMAND"
	EnvAPIToken      = "TASKER_API_TOKEN"
)

// Options are the process-level inputs of Main.
type Options struct {
	// Version is reported by `tasker version` and the HTTP API.
	Version string
	// Stdin, Stdout and Stderr default to the os streams.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// exitError carries an exit code with an error. A silent one prints nothing
// (the command already reported what happened).
type exitError struct {
	code   int
	err    error
	silent bool
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageErrorf reports bad input (exit 2).
func usageErrorf(format string, args ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, args...)}
}

// usageError wraps err as bad input (exit 2).
func usageError(err error) error { return &exitError{code: ExitUsage, err: err} }

// silentExit ends the process with code without printing anything more.
func silentExit(code int) error { return &exitError{code: code, silent: true} }

// classify maps an error returned by a command to an exit code: input
// problems (templates, context, request) are usage errors, the rest are
// failures.
func classify(err error) int {
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	switch {
	case errors.Is(err, tasker.ErrInvalidTemplate), errors.Is(err, tasker.ErrInvalidContext),
		errors.Is(err, tasker.ErrInvalidRequest):
		return ExitUsage
	}
	return ExitFailed
}

// app holds the global flags and streams shared by every command.
type app struct {
	opts Options

	databaseURL   string
	templatesDir  string
	environment   string
	enableCommand bool
	// httpAllowedHosts is --http-allowed-hosts (nil: not given).
	httpAllowedHosts []string

	// templatesSet records whether --templates or TASKER_TEMPLATES was given.
	templatesSet bool
}

// Main runs the tasker command with args (without the program name) and
// returns the process exit code.
func Main(ctx context.Context, args []string, opts Options) int {
	if opts.Stdin == nil {
		opts.Stdin = os.Stdin
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	a := &app{opts: opts}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(opts.Stdin)
	root.SetOut(opts.Stdout)
	root.SetErr(opts.Stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if !errors.As(err, &ee) {
		// Errors that did not come from a command's RunE are cobra's own:
		// unknown commands, bad flags, wrong argument counts.
		ee = &exitError{code: ExitUsage, err: err}
	}
	if !ee.silent && ee.err != nil {
		// Every message is scrubbed of the database's passwords, whatever
		// wrapped them (a driver's or url.Parse's error quotes the URL).
		msg := redactpkg.Text(oneLine(ee.err.Error()), a.databaseURL)
		fmt.Fprintf(opts.Stderr, "tasker: %s\n", redactpkg.Text(msg, os.Getenv(EnvDatabaseURL)))
	}
	return ee.code
}

// oneLine folds a multi-line message onto one line.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "\n") {
		return s
	}
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " ")
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "tasker",
		Short: "Tasker runs workflows: tasks made of steps that depend on each other",
		Long: `Tasker runs workflows: tasks built from YAML templates as DAGs of steps,
with retries, backoff and an audit trail, stored in PostgreSQL or SQLite.

Global settings can also come from the environment:
  TASKER_DATABASE_URL    --database-url (default: SQLite file tasker.db here)
  TASKER_TEMPLATES       --templates (default: ` + tasker.TemplatesDirDefault + `)
  TASKER_ENV             --env
  TASKER_ENABLE_COMMAND  --enable-command (1 or true)

Exit codes: 0 success, 1 failure (or the task did not complete),
2 bad usage, template or context.`,
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return a.resolveGlobals(cmd) },
	}
	pf := root.PersistentFlags()
	pf.StringVar(&a.databaseURL, "database-url", "",
		"database: postgres://... or sqlite:PATH ($"+EnvDatabaseURL+"; default: SQLite file "+tasker.SQLitePathDefault+")")
	pf.StringVar(&a.templatesDir, "templates", "",
		"directory of task templates ($"+EnvTemplates+"; default "+tasker.TemplatesDirDefault+")")
	pf.StringVar(&a.environment, "env", "", "environment whose template overrides apply ($"+EnvEnvironment+")")
	pf.BoolVar(&a.enableCommand, "enable-command", false,
		"allow the tasker:command handler to run programs ($"+EnvEnableCommand+"=1)")
	pf.StringSliceVar(&a.httpAllowedHosts, "http-allowed-hosts", nil,
		"hosts tasker:http steps may reach, comma-separated (api.example.com, *.example.com, host:port, *); "+
			"default $TASKER_HTTP_ALLOWED_HOSTS, or any host")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })

	root.AddCommand(a.runCommand(), a.templateCommand(), a.taskCommand(), a.migrateCommand(),
		a.serveCommand(), a.versionCommand(), a.benchCommand(), a.scheduleCommand(),
		a.pruneCommand())
	return root
}

// resolveGlobals fills unset global flags from the environment.
func (a *app) resolveGlobals(cmd *cobra.Command) error {
	flags := cmd.Flags()
	if !flags.Changed("database-url") {
		a.databaseURL = os.Getenv(EnvDatabaseURL)
	}
	a.templatesSet = flags.Changed("templates")
	if !a.templatesSet {
		if v := os.Getenv(EnvTemplates); v != "" {
			a.templatesDir, a.templatesSet = v, true
		}
	}
	if a.templatesDir == "" {
		a.templatesDir = tasker.TemplatesDirDefault
	}
	if !flags.Changed("env") {
		a.environment = os.Getenv(EnvEnvironment)
	}
	if !flags.Changed("enable-command") {
		if v := strings.TrimSpace(os.Getenv(EnvEnableCommand)); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return usageErrorf("%s=%q: want 1, 0, true or false", EnvEnableCommand, v)
			}
			a.enableCommand = b
		}
	}
	return checkDatabaseURL(a.databaseURL)
}

// checkDatabaseURL rejects a database URL tasker cannot open.
func checkDatabaseURL(u string) error {
	switch {
	case u == "", strings.HasPrefix(u, "postgres://"), strings.HasPrefix(u, "postgresql://"):
		return nil
	case strings.HasPrefix(u, "sqlite:"):
		if sqlitePath(u) == "" {
			return usageErrorf("--database-url %q names no SQLite file (want sqlite:PATH)", u)
		}
		return nil
	}
	return usageErrorf("--database-url must start with postgres://, postgresql:// or sqlite: (got %q)", redact(u))
}

// sqlitePath returns the file of a sqlite: URL.
func sqlitePath(u string) string {
	return strings.TrimPrefix(strings.TrimPrefix(u, "sqlite:"), "//")
}

// groupCommand returns a command that only holds subcommands; run without
// one it prints its usage and exits 2.
func groupCommand(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			_ = cmd.Usage()
			if len(args) > 0 {
				return usageErrorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return usageErrorf("%s needs a subcommand", cmd.CommandPath())
		},
	}
}

// wrapRun converts a command's error into an exitError with its class, so
// that Main can tell it from cobra's usage errors.
func wrapRun(fn func(cmd *cobra.Command, args []string) error) func(cmd *cobra.Command, args []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := fn(cmd, args)
		if err == nil {
			return nil
		}
		var ee *exitError
		if errors.As(err, &ee) {
			return err
		}
		return &exitError{code: classify(err), err: err}
	}
}

// exactArgs requires n positional arguments and, on a mismatch, shows the
// command's usage line.
func exactArgs(n int) cobra.PositionalArgs { return rangeArgs(n, n) }

// rangeArgs requires between lo and hi positional arguments and, on a
// mismatch, shows the command's usage line.
func rangeArgs(lo, hi int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < lo || len(args) > hi {
			return usageErrorf("usage: %s (got %s)", cmd.UseLine(), plural(len(args), "argument"))
		}
		return nil
	}
}

// noArgs refuses positional arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("%s takes no arguments (got %q); usage: %s", cmd.CommandPath(), args[0], cmd.UseLine())
	}
	return nil
}
