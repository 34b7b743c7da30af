package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/httpapi"
	"github.com/tasker-systems/tasker/internal/testdb"
)

const scheduledYAML = `name: digest
namespace_name: mail
step_templates:
  - name: send
    handler_class: tasker:noop
schedules:
  - name: morning
    cron: "0 7 * * *"
    time_zone: Europe/Berlin
    missed: catch_up
    context: {list: all}
`

// GET /v1/schedules and the RPC method "schedules" list the schedules with
// their next runs in UTC and in the schedule's zone.
func TestListSchedules(t *testing.T) {
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c, err := tasker.Open(context.Background(), tasker.Config{DatabaseURL: url, AutoMigrate: true, TemplatesDir: t.TempDir()})
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		_, err = c.AddTemplate("digest.yml", []byte(scheduledYAML))
		require.NoError(t, err)
		srv := serve(t, c, httpapi.Options{})

		resp, err := http.Get(srv.URL + "/v1/schedules")
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
		var doc struct {
			Schedules []struct {
				Namespace, Template, Version, Name, Cron, Missed string
				TimeZone                                         string `json:"time_zone"`
				Enabled, Running                                 bool
				Context                                          json.RawMessage `json:"context"`
				NextRuns                                         []time.Time     `json:"next_runs"`
				NextRunsLocal                                    []string        `json:"next_runs_local"`
				LastTick                                         *time.Time      `json:"last_tick"`
			} `json:"schedules"`
		}
		require.NoError(t, json.Unmarshal(body, &doc))
		require.Len(t, doc.Schedules, 1)
		s := doc.Schedules[0]
		require.Equal(t, []string{"mail", "digest", "0.1.0", "morning", "0 7 * * *", "catch_up", "Europe/Berlin"},
			[]string{s.Namespace, s.Template, s.Version, s.Name, s.Cron, s.Missed, s.TimeZone})
		require.True(t, s.Enabled)
		require.False(t, s.Running, "no Run loop in this process")
		require.Nil(t, s.LastTick)
		require.JSONEq(t, `{"list":"all"}`, string(s.Context))
		require.Len(t, s.NextRuns, tasker.ScheduleNextRuns)
		berlin, err := time.LoadLocation("Europe/Berlin")
		require.NoError(t, err)
		for i, n := range s.NextRuns {
			local := n.In(berlin)
			require.Equal(t, 7, local.Hour(), "07:00 in Berlin")
			require.Equal(t, local.Format(time.RFC3339), s.NextRunsLocal[i])
		}

		d := httpapi.NewDispatcher(c, "test")
		defer d.Close()
		viaCall, err := d.Call(context.Background(), "schedules", nil)
		require.NoError(t, err)
		callJSON, err := json.Marshal(viaCall)
		require.NoError(t, err)
		require.JSONEq(t, string(body), string(callJSON))
		_, err = d.Call(context.Background(), "schedules", []byte(`{"x":1}`))
		require.ErrorContains(t, err, `unknown field "x"`)
	})
}
