package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/taskertype"
)

func (a *app) taskCommand() *cobra.Command {
	cmd := groupCommand("task", "Inspect and operate on stored tasks")
	cmd.AddCommand(a.taskCreateCommand(), a.taskListCommand(), a.taskShowCommand(), a.taskExplainCommand(),
		a.taskRetryCommand(), a.taskCancelCommand(), a.taskResolveCommand())
	return cmd
}

// parseTaskID reads a task id argument.
func parseTaskID(s string) (int64, error) {
	id, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || id <= 0 {
		return 0, usageErrorf("task id %q: want a positive integer", s)
	}
	return id, nil
}

// withTask parses the task id argument, opens a client without templates
// and calls fn.
func (a *app) withTask(cmd *cobra.Command, arg string, fn func(ctx context.Context, c *tasker.Client, id int64) error) error {
	id, err := parseTaskID(arg)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	return a.withClient(ctx, func(c *tasker.Client) error { return fn(ctx, c, id) })
}

// withClient opens a client without templates, calls fn and closes it.
func (a *app) withClient(ctx context.Context, fn func(c *tasker.Client) error) error {
	c, err := a.openClient(ctx, openConfig{templates: templatesNone})
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

func (a *app) printJSON(v any) error {
	enc := json.NewEncoder(a.opts.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// fmtTime renders a timestamp in local time.
func fmtTime(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") }

func (a *app) taskListCommand() *cobra.Command {
	var (
		states          []string
		namespace, name string
		limit           int
		afterID         int64
		asJSON          bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tasks, newest first",
		Example: `  tasker task list --state error,blocked
  tasker task list --namespace shop --limit 20 --after-id 120`,
		Args: noArgs,
		RunE: wrapRun(func(cmd *cobra.Command, _ []string) error {
			f := &tasker.TaskFilter{Namespace: namespace, Name: name, AfterID: afterID, Limit: limit}
			for _, s := range states {
				st := tasker.TaskState(strings.TrimSpace(s))
				if !slices.Contains(taskertype.TaskStates(), st) {
					return usageErrorf("--state %q: want one of %s", s, joinStates(taskertype.TaskStates()))
				}
				f.States = append(f.States, st)
			}
			if limit <= 0 {
				return usageErrorf("--limit must be positive")
			}
			if afterID < 0 {
				return usageErrorf("--after-id cannot be negative")
			}
			return a.withClient(cmd.Context(), func(c *tasker.Client) error {
				tasks, err := c.ListTasks(cmd.Context(), f)
				if err != nil {
					return err
				}
				if asJSON {
					if tasks == nil {
						tasks = []*tasker.Task{}
					}
					return a.printJSON(tasks)
				}
				if len(tasks) == 0 {
					fmt.Fprintln(a.opts.Stdout, "no tasks")
					return nil
				}
				tb := newTable("ID", "TEMPLATE", "STATUS", "CREATED", "DURATION", "INITIATOR")
				now := time.Now()
				for _, t := range tasks {
					tb.add([]string{strconv.FormatInt(t.ID, 10), t.Namespace + "/" + t.Name + "@" + t.Version,
						string(t.State), fmtTime(t.CreatedAt), fmtDuration(taskDuration(t, now)), t.Initiator},
						"", "", taskStyle(t.State))
				}
				if err := tb.write(a.opts.Stdout, painter(useColor(a.opts.Stdout))); err != nil {
					return err
				}
				if len(tasks) == limit {
					fmt.Fprintf(a.opts.Stdout, "(more may exist: --after-id %d)\n", tasks[len(tasks)-1].ID)
				}
				return nil
			})
		}),
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&states, "state", nil, "only tasks in these states (comma-separated): "+joinStates(taskertype.TaskStates()))
	fl.StringVar(&namespace, "namespace", "", "only tasks of this namespace")
	fl.StringVar(&name, "name", "", "only tasks of this template name")
	fl.IntVar(&limit, "limit", 50, "at most this many tasks")
	fl.Int64Var(&afterID, "after-id", 0, "page: only tasks with an id below this one")
	fl.BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

func joinStates(states []tasker.TaskState) string {
	s := make([]string, len(states))
	for i, st := range states {
		s[i] = string(st)
	}
	return strings.Join(s, ", ")
}

func (a *app) taskShowCommand() *cobra.Command {
	var asJSON, history bool
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show a task and draw its steps as a DAG with their states",
		Long: `Show a task: its template, state, timing and context, then its steps in
topological layers (layer 1 has no parents), each with a state marker,
attempts/max attempts, duration and its parents ("<- a, b"); failed steps
show their last error. --history adds the audit trail.`,
		Args: exactArgs(1),
		RunE: wrapRun(func(cmd *cobra.Command, args []string) error {
			return a.withTask(cmd, args[0], func(ctx context.Context, c *tasker.Client, id int64) error {
				d, err := c.Task(ctx, id)
				if err != nil {
					return err
				}
				taskTrs, stepTrs, err := c.Transitions(ctx, id)
				if err != nil {
					return err
				}
				if asJSON {
					if !history {
						return a.printJSON(d)
					}
					return a.printJSON(struct {
						*tasker.TaskDetail
						TaskTransitions []*tasker.Transition `json:"task_transitions"`
						StepTransitions []*tasker.Transition `json:"step_transitions"`
					}{d, taskTrs, stepTrs})
				}
				a.showTask(d, firstStarts(stepTrs))
				if history {
					a.showHistory(taskTrs, stepTrs)
				}
				return nil
			})
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the task and its steps as JSON")
	cmd.Flags().BoolVar(&history, "history", false, "also print the audit trail (every transition)")
	return cmd
}

func (a *app) showTask(d *tasker.TaskDetail, starts stepTimes) {
	w := a.opts.Stdout
	p := painter(useColor(w))
	now := time.Now()
	done := 0
	for _, st := range d.Steps {
		if st.State.SatisfiesDependents() {
			done++
		}
	}
	fmt.Fprintf(w, "%s %d  %s/%s@%s\n", p.paint(ansiBold, "Task"), d.ID, d.Namespace, d.Name, d.Version)
	fmt.Fprintf(w, "  status:    %s (%d/%d steps done)\n", p.paint(taskStyle(d.State), string(d.State)), done, len(d.Steps))
	fmt.Fprintf(w, "  created:   %s\n", fmtTime(d.CreatedAt))
	if d.CompletedAt != nil {
		fmt.Fprintf(w, "  finished:  %s (took %s)\n", fmtTime(*d.CompletedAt), fmtDuration(taskDuration(d.Task, now)))
	} else {
		fmt.Fprintf(w, "  updated:   %s (running for %s)\n", fmtTime(d.UpdatedAt), fmtDuration(taskDuration(d.Task, now)))
	}
	fmt.Fprintf(w, "  kept:      %s\n", retentionText(d.Task))
	if d.Initiator != "" || d.SourceSystem != "" {
		fmt.Fprintf(w, "  initiator: %s", d.Initiator)
		if d.SourceSystem != "" {
			fmt.Fprintf(w, " via %s", d.SourceSystem)
		}
		fmt.Fprintln(w)
	}
	if d.Reason != "" {
		fmt.Fprintf(w, "  reason:    %s\n", d.Reason)
	}
	if len(d.Tags) > 0 {
		fmt.Fprintf(w, "  tags:      %s\n", strings.Join(d.Tags, ", "))
	}
	if d.IdempotencyKey != "" {
		fmt.Fprintf(w, "  idempotency key: %s\n", d.IdempotencyKey)
	}
	if d.Priority != 0 {
		fmt.Fprintf(w, "  priority:  %d\n", d.Priority)
	}
	fmt.Fprintf(w, "  context:   %s\n", truncate(compactJSON(d.Context), 200))
	fmt.Fprintln(w)
	fmt.Fprintln(w, p.paint(ansiBold, "Steps")+" (by layer; attempts/max; <- parents)")
	drawDAG(w, d.Steps, starts, now, p)
}

func (a *app) showHistory(taskTrs, stepTrs []*tasker.Transition) {
	all := append(slices.Clone(taskTrs), stepTrs...)
	slices.SortStableFunc(all, func(x, y *tasker.Transition) int {
		if c := x.CreatedAt.Compare(y.CreatedAt); c != 0 {
			return c
		}
		return int(x.ID - y.ID)
	})
	w := a.opts.Stdout
	fmt.Fprintln(w)
	fmt.Fprintln(w, "History")
	tb := newTable("TIME", "WHAT", "FROM", "TO", "EVENT", "ACTOR", "REASON")
	for _, tr := range all {
		what := "task"
		if tr.StepName != "" {
			what = "step " + tr.StepName
		}
		tb.add([]string{tr.CreatedAt.Local().Format("15:04:05.000"), what, tr.FromState, tr.ToState, tr.Event,
			tr.Actor, truncate(tr.Reason, 100)})
	}
	_ = tb.write(w, false)
}

// compactJSON renders a JSON document on one line.
func compactJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "{}"
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return string(raw)
	}
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return strings.TrimSpace(b.String())
}

func (a *app) taskExplainCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "explain ID",
		Short: "Say, for every step of a task, whether it can run and why not",
		Args:  exactArgs(1),
		RunE: wrapRun(func(cmd *cobra.Command, args []string) error {
			id, err := parseTaskID(args[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			// With the templates (when there are), explain shows the deadline.
			c, err := a.openClient(ctx, openConfig{templates: templatesOptional})
			if err != nil {
				return err
			}
			defer c.Close()
			d, err := c.Task(ctx, id)
			if err != nil {
				return err
			}
			rs, err := c.Explain(ctx, id)
			if err != nil {
				return err
			}
			deadline, timeout := taskDeadline(c, d.Task)
			why, err := lastTaskReason(ctx, c, id)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printJSON(struct {
					TaskID   int64                   `json:"task_id"`
					Status   tasker.TaskState        `json:"status"`
					Reason   string                  `json:"reason,omitempty"`
					Deadline *time.Time              `json:"deadline,omitempty"`
					Steps    []*tasker.StepReadiness `json:"steps"`
				}{id, d.State, why, deadline, rs})
			}
			p := painter(useColor(a.opts.Stdout))
			fmt.Fprintf(a.opts.Stdout, "task %d %s/%s@%s is %s", d.ID, d.Namespace, d.Name, d.Version,
				p.paint(taskStyle(d.State), string(d.State)))
			if why != "" {
				fmt.Fprintf(a.opts.Stdout, ": %s", why)
			}
			fmt.Fprintln(a.opts.Stdout)
			if deadline != nil {
				fmt.Fprintf(a.opts.Stdout, "deadline %s (timeout_seconds %d after creation)\n",
					deadline.Format(time.RFC3339), timeout)
			}
			tb := newTable("STEP", "STATE", "ATTEMPTS", "READY", "REASON")
			for _, r := range rs {
				ready := "no"
				if r.Ready {
					ready = "yes"
				}
				_, style := stepStyle(r.State)
				tb.add([]string{r.Name, string(r.State), fmt.Sprintf("%d/%d", r.Attempts, r.MaxAttempts), ready, r.Reason},
					"", style)
			}
			return tb.write(a.opts.Stdout, p)
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the readiness facts as JSON")
	return cmd
}

// operatorFlags are the flags shared by the manual operations.
type operatorFlags struct {
	actor, reason string
	run, json     bool
}

func (o *operatorFlags) register(cmd *cobra.Command, runnable bool) {
	cmd.Flags().StringVar(&o.actor, "actor", "", "who performs the operation (default $USER)")
	cmd.Flags().StringVar(&o.reason, "reason", "", "why (recorded in the audit trail)")
	if runnable {
		cmd.Flags().BoolVar(&o.run, "run", false, "then run the task here until it ends, like `tasker run`")
		cmd.Flags().BoolVar(&o.json, "json", false, "with --run: print only the JSON report")
	}
}

func (o *operatorFlags) actorOf() tasker.Actor {
	who := o.actor
	if who == "" {
		who = currentUser()
	}
	return tasker.Actor{Who: who, Reason: o.reason}
}

// afterOperation runs the task when --run was given, or says how it will run.
func (a *app) afterOperation(ctx context.Context, c *tasker.Client, id int64, o *operatorFlags) error {
	if o.run {
		return a.drive(ctx, c, id, o.json)
	}
	fmt.Fprintf(a.opts.Stdout, "task %d is queued: `tasker serve` runs it, or pass --run to run it here\n", id)
	return nil
}

func (a *app) taskRetryCommand() *cobra.Command {
	var (
		o     operatorFlags
		steps []string
	)
	cmd := &cobra.Command{
		Use:   "retry ID",
		Short: "Retry a task's failed steps (all of them, or those named with --step)",
		Long: `Move failed steps (all steps in error or waiting for retry, or those named
with --step) back to pending with their attempts reset, and re-enqueue the
task. With --run the task then runs in this process, like ` + "`tasker run`" + `.`,
		Args: exactArgs(1),
		RunE: wrapRun(func(cmd *cobra.Command, args []string) error {
			if o.json && !o.run {
				return usageErrorf("--json needs --run")
			}
			return a.withTask(cmd, args[0], func(ctx context.Context, c *tasker.Client, id int64) error {
				moved, err := c.RetrySteps(ctx, id, steps, o.actorOf())
				if err != nil {
					return err
				}
				if !o.json {
					fmt.Fprintf(a.opts.Stdout, "task %d: retrying %s\n", id, strings.Join(moved, ", "))
				}
				return a.afterOperation(ctx, c, id, &o)
			})
		}),
	}
	cmd.Flags().StringSliceVar(&steps, "step", nil, "step to retry (repeat or comma-separate; default: every failed step)")
	o.register(cmd, true)
	return cmd
}

func (a *app) taskCancelCommand() *cobra.Command {
	var o operatorFlags
	cmd := &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a task and its unfinished steps",
		Args:  exactArgs(1),
		RunE: wrapRun(func(cmd *cobra.Command, args []string) error {
			return a.withTask(cmd, args[0], func(ctx context.Context, c *tasker.Client, id int64) error {
				t, err := c.CancelTask(ctx, id, o.actorOf())
				if err != nil {
					return err
				}
				fmt.Fprintf(a.opts.Stdout, "task %d is %s\n", t.ID, t.State)
				return nil
			})
		}),
	}
	o.register(cmd, false)
	return cmd
}

func (a *app) taskResolveCommand() *cobra.Command {
	var o operatorFlags
	cmd := &cobra.Command{
		Use:   "resolve ID [STEP]",
		Short: "Mark a step (or, without STEP, the whole task) resolved manually",
		Long: `With STEP, mark that step resolved manually so that its children may run.
Without STEP, mark the task itself resolved manually: an operator declares it
done. A task can be resolved while it is not running (pending, waiting for a
retry, blocked or failed); its steps keep their states.`,
		Args: rangeArgs(1, 2),
		RunE: wrapRun(func(cmd *cobra.Command, args []string) error {
			if o.json && !o.run {
				return usageErrorf("--json needs --run")
			}
			if len(args) == 1 && o.run {
				return usageErrorf("--run needs a STEP: a resolved task does not run")
			}
			return a.withTask(cmd, args[0], func(ctx context.Context, c *tasker.Client, id int64) error {
				if len(args) == 1 {
					task, err := c.ResolveTask(ctx, id, o.actorOf())
					if err != nil {
						return err
					}
					fmt.Fprintf(a.opts.Stdout, "task %d is %s\n", id, task.State)
					return nil
				}
				st, err := c.ResolveStep(ctx, id, args[1], o.actorOf())
				if err != nil {
					return err
				}
				if !o.json {
					fmt.Fprintf(a.opts.Stdout, "task %d: step %s is %s\n", id, st.Name, st.State)
				}
				return a.afterOperation(ctx, c, id, &o)
			})
		}),
	}
	o.register(cmd, true)
	return cmd
}

// taskDeadline is the task's deadline (its template's timeout_seconds after
// its creation), nil when the template sets none or is not loaded.
func taskDeadline(c *tasker.Client, task *tasker.Task) (*time.Time, int) {
	tmpl, err := c.Template(task.Namespace, task.Name, task.Version)
	if err != nil || tmpl.TimeoutSeconds <= 0 {
		return nil, 0
	}
	at := task.CreatedAt.Add(time.Duration(tmpl.TimeoutSeconds) * time.Second).UTC()
	return &at, tmpl.TimeoutSeconds
}

// lastTaskReason is the reason of the task's last transition when the task
// has finished or stopped (error, blocked, cancelled, resolved): why it is
// where it is. Empty for a task still on its way.
func lastTaskReason(ctx context.Context, c *tasker.Client, taskID int64) (string, error) {
	trs, _, err := c.Transitions(ctx, taskID)
	if err != nil || len(trs) == 0 {
		return "", err
	}
	last := trs[len(trs)-1]
	switch last.ToState {
	case "error", "blocked", "cancelled", "resolved_manually":
		return last.Reason, nil
	}
	return "", nil
}
