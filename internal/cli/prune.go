package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/template"
)

func (a *app) pruneCommand() *cobra.Command {
	var (
		dryRun     bool
		olderThan  string
		batch      int
		maxBatches int
		pause      time.Duration
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Delete the finished tasks whose retention has passed",
		Long: `Delete the finished tasks (complete, error, cancelled, resolved_manually) whose
retention has passed, with their steps, edges, transitions and queue records,
--batch tasks per transaction, oldest due first. Each task keeps the retention
of its template (retention, retention_failed) or of the runner that created it
(7 days, 30 days for a failed task, by default): see docs/flow-control.md.
Runners (tasker serve, Client.Run) do this every minute; this command does it
by hand. --older-than replaces every task's retention: every task that
finished longer ago than that is deleted, even one kept for ever. One process
prunes at a time: when another one is deleting, this one stops and says so.
A pruned task's idempotency key can start a new task.`,
		Example: `  tasker prune --dry-run
  tasker prune
  tasker prune --older-than 90d --batch 1000`,
		Args: noArgs,
		RunE: wrapRun(func(cmd *cobra.Command, _ []string) error {
			if batch < 1 || maxBatches < 0 || pause < 0 {
				return usageErrorf("--batch must be at least 1, --max-batches and --pause not negative")
			}
			var older time.Duration
			if olderThan != "" {
				secs, err := template.ParseRetention(olderThan)
				if err != nil || secs == template.RetentionForever {
					if err == nil {
						err = fmt.Errorf("a duration is needed, not forever")
					}
					return usageErrorf("--older-than: %v", err)
				}
				older = time.Duration(secs) * time.Second
			}
			ctx := cmd.Context()
			c, err := a.openClient(ctx, openConfig{templates: templatesNone})
			if err != nil {
				return err
			}
			defer c.Close()
			what := "whose retention has passed"
			if older > 0 {
				what = "that finished more than " + olderThan + " ago"
			}
			opts := tasker.PruneOptions{OlderThan: older, Batch: batch, MaxBatches: maxBatches, Pause: pause,
				DryRun: dryRun}
			if !asJSON && !dryRun {
				opts.Progress = func(n int) {
					fmt.Fprintf(a.opts.Stderr, "  pruned %s so far\n", plural(n, "task"))
				}
			}
			rep, err := c.Prune(ctx, opts)
			if err != nil {
				if rep != nil && rep.Deleted > 0 {
					fmt.Fprintf(a.opts.Stderr, "pruned %s before the error\n", plural(rep.Deleted, "task"))
				}
				return err
			}
			if asJSON {
				return a.printJSON(struct {
					DryRun  bool    `json:"dry_run"`
					Due     *int    `json:"due,omitempty"`
					Deleted int     `json:"deleted"`
					Batches int     `json:"batches"`
					Busy    bool    `json:"busy"`
					Seconds float64 `json:"seconds"`
				}{dryRun, dueIf(dryRun, rep.Due), rep.Deleted, rep.Batches, rep.Busy, rep.Took.Seconds()})
			}
			switch {
			case dryRun:
				fmt.Fprintf(a.opts.Stdout, "%s %s on %s (dry run: nothing deleted)\n",
					plural(rep.Due, "finished task"), what, a.databaseLabel())
			default:
				fmt.Fprintf(a.opts.Stdout, "pruned %s %s on %s in %s (%s)\n", plural(rep.Deleted, "finished task"), what,
					a.databaseLabel(), batches(rep.Batches), fmtDuration(rep.Took))
			}
			if rep.Busy {
				fmt.Fprintln(a.opts.Stdout, "another process is pruning: stopped and left the rest to it")
			}
			return nil
		}),
	}
	f := cmd.Flags()
	f.BoolVar(&dryRun, "dry-run", false, "count the tasks that are due, delete nothing")
	f.StringVar(&olderThan, "older-than", "", "delete every task that finished longer ago than this (30d, 720h), "+
		"whatever its retention")
	f.IntVar(&batch, "batch", tasker.PruneBatchDefault, "tasks deleted per transaction")
	f.IntVar(&maxBatches, "max-batches", 0, "stop after this many batches (0: until none is due)")
	f.DurationVar(&pause, "pause", 0, "wait at least this long, and 4 times the batch's own time, between batches (to leave the database to work)")
	f.BoolVar(&asJSON, "json", false, "print the outcome as JSON")
	return cmd
}

// batches counts batches in words.
func batches(n int) string {
	if n == 1 {
		return "1 batch"
	}
	return fmt.Sprintf("%d batches", n)
}

// dueIf is the dry run's count for JSON (omitted when not a dry run).
func dueIf(dryRun bool, n int) *int {
	if !dryRun {
		return nil
	}
	return &n
}

// retentionText says how long task t is kept, for `tasker task show`:
// until when once it finished, for how long after it finishes before.
func retentionText(t *tasker.Task) string {
	keep := func(secs *int64) string {
		if secs == nil {
			return "for ever"
		}
		return template.FormatRetention(*secs)
	}
	switch {
	case t.CompletedAt != nil && t.KeepUntil != nil:
		return fmt.Sprintf("until %s", fmtTime(*t.KeepUntil))
	case t.CompletedAt != nil:
		return "for ever"
	case t.RetentionSeconds == nil && t.RetentionFailedSeconds == nil:
		return "for ever"
	}
	return fmt.Sprintf("%s after it finishes (%s if it fails)", keep(t.RetentionSeconds), keep(t.RetentionFailedSeconds))
}
