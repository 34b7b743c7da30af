package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/template"
)

// runFlags are the flags of `tasker run`.
type runFlags struct {
	context        string
	json           bool
	idempotencyKey string
	bypass         []string
	reason         string
}

func (a *app) runCommand() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run NAMESPACE/NAME[@VERSION]",
		Short: "Create a task from a template and run it here until it ends",
		Long: `Create a task from a template and run all of its steps in this process,
waiting through retry delays, until the task completes, fails or is blocked.

On a terminal the steps are shown as a table that updates in place; otherwise
one line is printed per step event. --json prints only a final JSON report:
{"task_id", "namespace", "name", "version", "status", "duration_ms",
 "steps": [{"name", "status", "attempts", "max_attempts", "results",
            "last_error", "duration_ms"}]}

The version defaults to the highest loaded one. Exit status: 0 when the task
completed, 1 when it ended in error or blocked, 2 for bad input (unknown or
invalid template, malformed or rejected context).`,
		Example: `  tasker run shop/order_fulfillment --templates examples/order_fulfillment \
      --context @examples/order_fulfillment/context.json
  tasker run shop/order_fulfillment@1.0.0 --context '{"order_id": 7, "customer_email": "a@b.example"}' --json`,
		Args: exactArgs(1),
		RunE: wrapRun(func(cmd *cobra.Command, args []string) error { return a.run(cmd.Context(), args[0], &f) }),
	}
	fl := cmd.Flags()
	fl.StringVar(&f.context, "context", "", "task context: a JSON object, @FILE to read it from a file, or @- for stdin")
	fl.BoolVar(&f.json, "json", false, "print only a JSON report of the final state on stdout")
	fl.StringVar(&f.idempotencyKey, "idempotency-key", "", "create the task at most once per key: a repeated key reports (and resumes) the task it created")
	fl.StringSliceVar(&f.bypass, "bypass", nil, "skippable steps to mark resolved without running them (comma-separated or repeated)")
	fl.StringVar(&f.reason, "reason", "", "why the task is run (recorded on the task)")
	return cmd
}

// readContext reads --context: inline JSON, @FILE or @- (stdin). It must be
// a JSON object; empty means {}.
func readContext(arg string, stdin io.Reader) (json.RawMessage, error) {
	data := []byte(arg)
	src := "--context"
	if name, ok := strings.CutPrefix(arg, "@"); ok {
		var err error
		switch name {
		case "":
			return nil, usageErrorf("--context @: missing file name (use @FILE or @- for stdin)")
		case "-":
			src = "--context from stdin"
			data, err = io.ReadAll(stdin)
		default:
			src = "--context file " + name
			data, err = os.ReadFile(name)
		}
		if err != nil {
			return nil, usageErrorf("cannot read %s: %v", src, unwrapPathError(err))
		}
	}
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return json.RawMessage(`{}`), nil
	}
	var v any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return nil, usageErrorf("malformed %s: %v", src, jsonErrorText(data, err))
	}
	if dec.More() {
		return nil, usageErrorf("malformed %s: more than one JSON value", src)
	}
	if _, ok := v.(map[string]any); !ok {
		return nil, usageErrorf("%s must be a JSON object, got %s", src, template.JSONKind(v))
	}
	return json.RawMessage(data), nil
}

// unwrapPathError drops the repeated path from an *os.PathError.
func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// jsonErrorText adds the line and column to a JSON syntax error.
func jsonErrorText(data []byte, err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		before := data[:min(int(se.Offset), len(data))]
		line := bytes.Count(before, []byte("\n")) + 1
		col := len(before) - bytes.LastIndexByte(before, '\n')
		return fmt.Sprintf("%v (line %d, column %d)", err, line, col)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of JSON input"
	}
	return err.Error()
}

// currentUser names the operator for audit rows.
func currentUser() string {
	for _, k := range []string{"USER", "LOGNAME", "USERNAME"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return "operator"
}

func (a *app) run(ctx context.Context, refArg string, f *runFlags) error {
	ref, err := parseTemplateRef(refArg)
	if err != nil {
		return err
	}
	taskCtx, err := readContext(f.context, a.opts.Stdin)
	if err != nil {
		return err
	}
	// Check every input before touching the database.
	reg, err := a.loadTemplates(templatesRequired)
	if err != nil {
		return err
	}
	tmpl, err := a.lookupTemplate(reg, ref)
	if err != nil {
		return err
	}
	if err := tmpl.ValidateContext(taskCtx); err != nil {
		return usageError(err)
	}
	for _, name := range f.bypass {
		st := tmpl.Step(name)
		switch {
		case st == nil:
			return usageErrorf("--bypass %s: %s has no such step", name, tmpl.Key())
		case !st.Skippable:
			return usageErrorf("--bypass %s: step is not skippable in %s", name, tmpl.Key())
		}
	}

	c, err := a.openClient(ctx, openConfig{templates: templatesRequired})
	if err != nil {
		return err
	}
	defer c.Close()
	task, created, err := c.InitializeTask(ctx, &tasker.TaskRequest{
		Namespace: tmpl.Namespace, Name: tmpl.Name, Version: tmpl.Version, Context: taskCtx,
		Initiator: currentUser(), SourceSystem: "tasker-cli", Reason: f.reason, BypassSteps: f.bypass,
		IdempotencyKey: f.idempotencyKey,
	})
	if err != nil {
		return fmt.Errorf("create task from %s: %w", tmpl.Key(), err)
	}
	if !created {
		what := "running it"
		if task.State.Terminal() {
			what = "nothing to run"
		}
		fmt.Fprintf(a.opts.Stderr, "tasker: idempotency key %q already names task %d (%s); %s\n",
			f.idempotencyKey, task.ID, task.State, what)
	}
	return a.drive(ctx, c, task.ID, f.json)
}

// drive runs a task in this process until no more work is due, showing
// progress, then prints the summary (or the JSON report) and returns the
// exit status: nil when the task completed.
func (a *app) drive(ctx context.Context, c *tasker.Client, taskID int64, asJSON bool) error {
	sigCtx, stopSignals := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	finished := make(chan struct{})
	defer close(finished) // runs before stopSignals
	go func() {
		select {
		case <-finished:
			return
		case <-sigCtx.Done():
		}
		stopSignals() // a second signal kills the process
		if ctx.Err() == nil {
			fmt.Fprintln(a.opts.Stderr, "tasker: interrupted: letting running steps finish, then handing the task back")
		}
	}()
	dbctx := context.WithoutCancel(ctx)

	detail, err := c.Task(dbctx, taskID)
	if err != nil {
		return err
	}
	mode := progressPlain
	switch {
	case asJSON:
		mode = progressNone
	case isTerminal(a.opts.Stdout):
		mode = progressLive
	}
	color := useColor(a.opts.Stdout)
	prog := startProgress(c, detail, a.opts.Stdout, mode, color)
	res, runErr := c.RunTask(sigCtx, taskID)
	final, err := c.Task(dbctx, taskID)
	prog.stop(final)
	if err != nil {
		return err
	}
	_, stepTrs, err := c.Transitions(dbctx, taskID)
	if err != nil {
		return err
	}
	now := time.Now()
	report := buildReport(final, firstStarts(stepTrs), now)

	if asJSON {
		enc := json.NewEncoder(a.opts.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(a.opts.Stdout, summaryLine(final, report, painter(color)))
	}

	switch {
	case runErr != nil && errors.Is(runErr, context.Canceled) && sigCtx.Err() != nil:
		return fmt.Errorf("interrupted: task %d is %s and stays queued; `tasker serve` or a retry will pick it up",
			taskID, final.State)
	case runErr != nil:
		return fmt.Errorf("run task %d: %w", taskID, runErr)
	case final.State == "complete":
		return nil
	case res != nil && res.Outcome == "running_elsewhere" && !final.State.Terminal():
		return fmt.Errorf("task %d is %s: its steps are running in another process", taskID, final.State)
	}
	return silentExit(ExitFailed)
}

// summaryLine is the last line of `tasker run`: what happened, how long it
// took and, when it did not complete, what failed and where to look.
func summaryLine(d *tasker.TaskDetail, r *Report, p painter) string {
	attempts, done := 0, 0
	var failed []string
	for _, st := range d.Steps {
		attempts += st.Attempts
		switch st.State {
		case "complete", "resolved_manually", "skipped":
			done++
		case "error":
			failed = append(failed, st.Name)
		}
	}
	key := d.Namespace + "/" + d.Name + "@" + d.Version
	s := fmt.Sprintf("task %d %s %s in %s: %d/%d steps done, %s", d.ID, key,
		p.paint(ansiBold+taskStyle(d.State), string(d.State)), fmtDuration(time.Duration(r.DurationMS)*time.Millisecond),
		done, len(d.Steps), plural(attempts, "attempt"))
	if len(failed) > 0 {
		s += "; failed: " + strings.Join(failed, ", ")
	}
	if d.State != "complete" {
		s += fmt.Sprintf(" (see `tasker task show %d` and `tasker task explain %d`)", d.ID, d.ID)
	}
	return s
}
