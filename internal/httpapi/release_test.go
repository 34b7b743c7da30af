package httpapi_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/httpapi"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// A worker shutting down releases its unfinished attempt (no attempt
// counted) and yields the task back to the queue, due now.
func TestRPCReleaseAndYield(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		d := httpapi.NewDispatcher(c, "test")
		defer d.Close()

		created := dispatch(t, d, "initialize_task", map[string]any{"namespace": "test", "name": "chain", "version": "1.0.0"})
		id := created["task"].(map[string]any)["task_id"]
		claim := dispatch(t, d, "claim_steps", map[string]any{"task_id": id, "owner": "w1"})
		step := claim["steps"].([]any)[0].(map[string]any)
		require.EqualValues(t, 1, step["attempt"])
		entry := map[string]any{"step_id": step["step_id"], "attempt": step["attempt"]}

		_, err := d.Call(context.Background(), "report_results",
			[]byte(`{"task_id":`+jsonNumber(id)+`,"owner":"w1","results":[{"step_id":`+jsonNumber(step["step_id"])+
				`,"attempt":1,"success":true,"release":true}]}`))
		_, status := httpapi.ErrorOf(err)
		require.Equal(t, 400, status, "a released attempt cannot be a success")
		// Another owner cannot release w1's attempt.
		other := dispatch(t, d, "report_results", map[string]any{"task_id": id, "owner": "w2",
			"results": []any{map[string]any{"step_id": step["step_id"], "attempt": 1, "release": true}}})
		require.Equal(t, "discarded", other["results"].([]any)[0].(map[string]any)["status"])

		entry["release"] = true
		rep := dispatch(t, d, "report_results", map[string]any{"task_id": id, "owner": "w1", "results": []any{entry}})
		got := rep["results"].([]any)[0].(map[string]any)
		require.Equal(t, "recorded", got["status"])
		require.Equal(t, "pending", got["state"])
		require.Contains(t, got["reason"], "released by w1")
		require.Equal(t, true, rep["claim_more"])

		before := time.Now()
		y := dispatch(t, d, "yield", map[string]any{"task_id": id, "owner": "w1", "reason": "sidekiq shutdown"})
		require.Equal(t, "yielded", y["outcome"])
		require.Equal(t, "pending", y["status"])
		require.Equal(t, false, y["finalized"])
		require.Contains(t, y["reason"], "sidekiq shutdown")

		task := dispatch(t, d, "task", map[string]any{"task_id": id})["task"].(map[string]any)
		require.Equal(t, "pending", task["status"])
		for _, s := range task["steps"].([]any) {
			st := s.(map[string]any)
			require.Equal(t, "pending", st["status"], st["name"])
			require.EqualValues(t, 0, st["attempts"], "the released attempt is not counted: %v", st)
		}
		var found bool
		for _, e := range dispatch(t, d, "queue_list", nil)["entries"].([]any) {
			q := e.(map[string]any)
			if q["task_id"] == id {
				found = true
				require.Equal(t, "reenqueue", q["operation"])
				runAt, err := time.Parse(time.RFC3339Nano, q["run_at"].(string))
				require.NoError(t, err)
				require.WithinDuration(t, before, runAt, 5*time.Second, "due now")
				require.Nil(t, q["lease_owner"])
			}
		}
		require.True(t, found, "the yielded task has no queue record")

		// The next claim is attempt 1 again.
		again := dispatch(t, d, "claim_steps", map[string]any{"task_id": id, "owner": "w3"})
		require.EqualValues(t, 1, again["steps"].([]any)[0].(map[string]any)["attempt"])

		// Yield of a finished or unknown task.
		_, err = d.Call(context.Background(), "yield", []byte(`{"task_id":1}`))
		_, status = httpapi.ErrorOf(err)
		require.Equal(t, 400, status, "owner is required")
	})
}
