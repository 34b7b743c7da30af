package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/testdb"
)

// `tasker schedule list` shows the example's schedules with their next
// run in the schedule's zone and in UTC; --json gives the same facts.
func TestScheduleList(t *testing.T) {
	testdb.EachBackend(t, func(t *testing.T, url string) {
		run := func(args ...string) string {
			var out, errw bytes.Buffer
			args = append([]string{"--database-url", url, "--templates", "../../examples/cron"}, args...)
			code := Main(context.Background(), args, Options{Stdout: &out, Stderr: &errw})
			require.Equal(t, ExitOK, code, errw.String())
			return out.String()
		}
		run("migrate", "up")
		table := run("schedule", "list")
		lines := strings.Split(strings.TrimSpace(table), "\n")
		require.Len(t, lines, 4, table)
		require.Contains(t, lines[0], "NEXT RUN (ZONE)")
		require.Contains(t, lines[1], "reports/nightly_report/nightly")
		require.Contains(t, lines[1], "30 2 * * * (America/New_York)")
		require.Regexp(t, `02:30:00 E[SD]T  \d{4}-\d\d-\d\d 0[67]:30:00`, lines[1])
		require.Contains(t, lines[3], "disabled")

		var doc struct {
			Schedules []struct {
				Name     string      `json:"name"`
				NextRuns []time.Time `json:"next_runs"`
			} `json:"schedules"`
		}
		require.NoError(t, json.Unmarshal([]byte(run("schedule", "list", "--json")), &doc))
		require.Len(t, doc.Schedules, 3)
		require.Equal(t, "refresh", doc.Schedules[1].Name)
		require.Equal(t, 5*time.Minute, doc.Schedules[1].NextRuns[1].Sub(doc.Schedules[1].NextRuns[0]))
	})
}
