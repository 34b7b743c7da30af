package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/tasker-systems/tasker"
)

func (a *app) scheduleCommand() *cobra.Command {
	cmd := groupCommand("schedule", "Show the cron schedules of the task templates")
	cmd.AddCommand(a.scheduleListCommand())
	return cmd
}

func (a *app) scheduleListCommand() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the templates' schedules with their next runs and last tick",
		Long: `List the cron schedules of the highest version of every template under
--templates: the expression and its zone, the missed-tick policy, the next
run in the schedule's zone and in UTC, and the latest tick that has a task
in the database. Runners (tasker serve, Client.Run) create the tasks;
this command only reads.`,
		Example: `  tasker schedule list --templates examples/cron
  tasker schedule list --json`,
		Args: noArgs,
		RunE: wrapRun(func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := a.openClient(ctx, openConfig{templates: templatesOptional})
			if err != nil {
				return err
			}
			defer c.Close()
			list, err := c.Schedules(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				return a.printJSON(map[string][]*tasker.ScheduleInfo{"schedules": list})
			}
			if len(list) == 0 {
				fmt.Fprintf(a.opts.Stdout, "no schedules in the templates under %s\n", a.templatesDir)
				return nil
			}
			tb := newTable("SCHEDULE", "CRON", "MISSED", "NEXT RUN (ZONE)", "NEXT RUN (UTC)", "LAST TICK (UTC)", "TASK")
			for _, s := range list {
				tb.add(scheduleRow(s))
			}
			return tb.write(a.opts.Stdout, painter(useColor(a.opts.Stdout)))
		}),
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the schedules as JSON")
	return cmd
}

// scheduleRow renders one schedule for the table.
func scheduleRow(s *tasker.ScheduleInfo) []string {
	next, nextUTC := "-", "-"
	if !s.Enabled {
		next, nextUTC = "disabled", "disabled"
	} else if len(s.NextRuns) > 0 {
		loc, err := time.LoadLocation(s.TimeZone)
		if err != nil {
			loc = time.UTC
		}
		n := s.NextRuns[0]
		next = n.In(loc).Format("2006-01-02 15:04:05 MST")
		nextUTC = n.UTC().Format("2006-01-02 15:04:05")
	}
	last, task := "-", "-"
	if s.LastTick != nil {
		last = s.LastTick.UTC().Format("2006-01-02 15:04:05")
		task = strconv.FormatInt(s.LastTaskID, 10)
	}
	id := s.Namespace + "/" + s.Template + "/" + s.Name
	expr := s.Cron
	if s.TimeZone != "" && s.TimeZone != "UTC" {
		expr += " (" + s.TimeZone + ")"
	}
	return []string{id, strings.TrimSpace(expr), s.Missed, next, nextUTC, last, task}
}
