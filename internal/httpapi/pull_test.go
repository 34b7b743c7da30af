package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/httpapi"
	"github.com/tasker-systems/tasker/internal/testdb"
)

func TestRPCPullProtocol(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		srv := serve(t, c, httpapi.Options{Version: "test"})
		api := caller{t: t, base: srv.URL}
		rpc := func(method string, params any) map[string]any {
			t.Helper()
			r := api.do("POST", "/v1/rpc/"+method, params)
			require.Equal(t, http.StatusOK, r.status, "%s: %s", method, r.body)
			return r.doc(t)
		}

		require.Equal(t, map[string]any{"pong": true}, rpc("ping", nil))
		info := rpc("info", map[string]any{})
		require.Equal(t, httpapi.Protocol, info["protocol"])
		require.InDelta(t, 30, info["step_lease_seconds"], 0.001)

		found := rpc("find_handler", map[string]any{"namespace": "test", "name": "chain"})
		require.Equal(t, true, found["found"])
		require.Equal(t, "1.1.0", found["version"])
		require.Contains(t, found["yaml_template"], "name: chain")
		miss := rpc("find_handler", map[string]any{"namespace": "test", "name": "nope"})
		require.Equal(t, false, miss["found"])
		require.Equal(t, "not_found", miss["error"].(map[string]any)["code"])

		sub := rpc("events_subscribe", map[string]any{})["subscription_id"].(string)
		created := rpc("initialize_task", map[string]any{"namespace": "test", "name": "chain", "version": "1.0.0"})
		require.Equal(t, true, created["created"])
		id := created["task"].(map[string]any)["task_id"]

		var order []string
		for range 10 {
			claim := rpc("claim_steps", map[string]any{"task_id": id, "owner": "w1"})
			require.Equal(t, true, claim["runnable"])
			steps := claim["steps"].([]any)
			if len(steps) == 0 {
				fin := rpc("finalize", map[string]any{"task_id": id, "owner": "w1"})
				if fin["outcome"] == "continue" {
					continue
				}
				require.Equal(t, "complete", fin["outcome"])
				require.Equal(t, "complete", fin["status"])
				require.Equal(t, true, fin["finalized"])
				break
			}
			var results []map[string]any
			for _, s := range steps {
				st := s.(map[string]any)
				order = append(order, st["name"].(string))
				results = append(results, map[string]any{"step_id": st["step_id"], "attempt": st["attempt"], "success": true,
					"results": map[string]any{"name": st["name"]}})
			}
			ext := rpc("extend_leases", map[string]any{"owner": "w1", "step_ids": []any{steps[0].(map[string]any)["step_id"]}})
			require.EqualValues(t, 1, ext["extended"])
			// Nothing else is in flight: the report asks for the finalizer too.
			rep := rpc("report_results", map[string]any{"task_id": id, "owner": "w1", "results": results, "finalize": true})
			require.Equal(t, true, rep["claim_more"])
			require.Equal(t, "recorded", rep["results"].([]any)[0].(map[string]any)["status"])
			again := rpc("report_results", map[string]any{"task_id": id, "owner": "w1", "results": results})
			require.Equal(t, "discarded", again["results"].([]any)[0].(map[string]any)["status"])
			require.Nil(t, again["final"], "no finalizer without finalize")
			final := rep["final"].(map[string]any)
			if order[len(order)-1] != "c" {
				require.Equal(t, "continue", final["outcome"], "the next step is ready")
				require.Equal(t, false, final["finalized"])
				continue
			}
			require.Equal(t, "complete", final["outcome"])
			require.Equal(t, "complete", final["status"])
			require.Equal(t, true, final["finalized"])
			break
		}
		require.Equal(t, []string{"a", "b", "c"}, order)

		polled := rpc("events_poll", map[string]any{"subscription_id": sub, "wait_ms": 100})
		var names []string
		for _, e := range polled["events"].([]any) {
			names = append(names, e.(map[string]any)["name"].(string))
		}
		require.Equal(t, []string{"task.initialized", "task.enqueue", "task.started", "step.started", "step.completed",
			"step.started", "step.completed", "step.started", "step.completed", "task.completed"}, names)
		require.Equal(t, map[string]any{"unsubscribed": true}, rpc("events_unsubscribe", map[string]any{"subscription_id": sub}))
		api.do("POST", "/v1/rpc/events_poll", map[string]any{"subscription_id": sub}).errorCode(t, http.StatusNotFound, "not_found")

		// The same document through the Dispatcher (the C ABI's path) and over HTTP.
		d := httpapi.NewDispatcher(c, "test")
		defer d.Close()
		viaCall, err := d.Call(context.Background(), "task", []byte(`{"task_id":`+jsonNumber(id)+`}`))
		require.NoError(t, err)
		callJSON, err := json.Marshal(viaCall)
		require.NoError(t, err)
		require.JSONEq(t, string(callJSON), string(api.do("POST", "/v1/rpc/task", map[string]any{"task_id": id}).body))
	})
}

func jsonBody(t *testing.T, v any) *bytes.Reader {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return bytes.NewReader(b)
}

func jsonNumber(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestRPCErrors(t *testing.T) {
	t.Parallel()
	c := openClient(t, "sqlite:"+t.TempDir()+"/rpc.db")
	srv := serve(t, c, httpapi.Options{})
	api := caller{t: t, base: srv.URL}
	e := api.do("POST", "/v1/rpc/no_such", nil).errorCode(t, http.StatusBadRequest, "invalid_request")
	require.Contains(t, e["details"].(map[string]any)["methods"], "claim_steps")
	api.do("POST", "/v1/rpc/claim_steps", map[string]any{"task_id": 1}).errorCode(t, http.StatusBadRequest, "invalid_request")
	api.do("POST", "/v1/rpc/claim_steps", map[string]any{"task_id": 99, "owner": "w"}).errorCode(t, http.StatusNotFound, "not_found")
	api.do("POST", "/v1/rpc/task", map[string]any{"task_id": 1, "extra": 1}).errorCode(t, http.StatusBadRequest, "invalid_request")
	api.do("POST", "/v1/rpc/task", "{not json").errorCode(t, http.StatusBadRequest, "invalid_request")
	api.do("POST", "/v1/rpc/initialize_task", map[string]any{"namespace": "test", "name": "order", "context": map[string]any{}}).
		errorCode(t, http.StatusUnprocessableEntity, "invalid_context")
	api.do("GET", "/v1/rpc/ping", nil).errorCode(t, http.StatusMethodNotAllowed, "method_not_allowed")

	req, err := http.NewRequest("POST", srv.URL+"/v1/rpc/ping", nil)
	require.NoError(t, err)
	req.Header.Set(httpapi.TimeoutHeader, "soon")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = res.Body.Close()
	require.Equal(t, http.StatusBadRequest, res.StatusCode)

	// A timed-out call answers "timeout".
	created := api.do("POST", "/v1/rpc/events_subscribe", map[string]any{}).doc(t)
	req, err = http.NewRequest("POST", srv.URL+"/v1/rpc/events_poll",
		jsonBody(t, map[string]any{"subscription_id": created["subscription_id"], "wait_ms": 5000}))
	require.NoError(t, err)
	req.Header.Set(httpapi.TimeoutHeader, "50")
	res, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode, "a poll that waited out its timeout answers with no events")

	// queue_claim honours grace_seconds: a just-created task's record is skipped.
	_ = api.do("POST", "/v1/rpc/initialize_task", map[string]any{"namespace": "other", "name": "listing"})
	claimed := api.do("POST", "/v1/rpc/queue_claim", map[string]any{"owner": "r", "limit": 10, "lease_seconds": 60, "grace_seconds": 3600}).doc(t)
	require.Empty(t, claimed["entries"])
	claimed = api.do("POST", "/v1/rpc/queue_claim", map[string]any{"owner": "r", "limit": 10, "lease_seconds": 60}).doc(t)
	require.Len(t, claimed["entries"], 1)
	require.Equal(t, "enqueue", claimed["entries"].([]any)[0].(map[string]any)["operation"])
	rescued := api.do("POST", "/v1/rpc/rescue", nil).doc(t)
	require.EqualValues(t, 0, rescued["rescued"])
}
