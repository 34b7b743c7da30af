package httpapi_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/httpapi"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// TestInvalidInput sends every kind of text and number a database cannot
// store alike, and keys encoding/json would bend, through every entry point:
// each is the same 400 on both databases, naming the field (and the JSON
// pointer of the value), and nothing is written. Before internal/jsonvalid,
// invalid UTF-8 was accepted as U+FFFD (201), lone surrogates and huge
// numbers were 500 on PostgreSQL and 201 on SQLite, and keys matched
// case-insensitively.
// randomText returns n random hex digits: text PostgreSQL cannot compress
// to fit a long value into an index entry.
func randomText(t *testing.T, n int) string {
	b := make([]byte, (n+1)/2)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return hex.EncodeToString(b)[:n]
}

func TestInvalidInput(t *testing.T) {
	t.Parallel()
	deep := strings.Repeat("[", 1001) + strings.Repeat("]", 1001)
	cases := []struct {
		name, method, path, body string
		field, pointer, msg      string
	}{
		{"invalid UTF-8 initiator", "POST", "/v1/tasks", "{\"name\": \"chain\", \"namespace\": \"test\", \"initiator\": \"k\xc3(\"}",
			"initiator", "/initiator", "UTF-8"},
		{"invalid UTF-8 idempotency key", "POST", "/v1/tasks", "{\"name\": \"chain\", \"namespace\": \"test\", \"idempotency_key\": \"k\xfe(\"}",
			"idempotency_key", "/idempotency_key", "UTF-8"},
		{"invalid UTF-8 tag", "POST", "/v1/tasks", "{\"name\": \"chain\", \"namespace\": \"test\", \"tags\": [\"ok\", \"\xff\"]}",
			"tags", "/tags/1", "UTF-8"},
		{"UTF-8 encoded surrogate in reason", "POST", "/v1/tasks", "{\"name\": \"chain\", \"namespace\": \"test\", \"reason\": \"\xed\xa0\x80\"}",
			"reason", "/reason", "UTF-8"},
		{"invalid UTF-8 in a context key", "POST", "/v1/tasks", "{\"name\": \"chain\", \"namespace\": \"test\", \"context\": {\"\xc0\": 1}}",
			"context", "/context", "UTF-8"},
		{"invalid UTF-8 version", "POST", "/v1/tasks", "{\"name\": \"chain\", \"namespace\": \"test\", \"version\": \"1.0.0\xff\"}",
			"version", "/version", "UTF-8"},
		{"lone surrogate in the context", "POST", "/v1/tasks", `{"name": "chain", "namespace": "test", "context": {"a": "\ud800"}}`,
			"context", "/context/a", "surrogate"},
		{"lone low surrogate in step inputs", "POST", "/v1/tasks", `{"name": "chain", "namespace": "test", "step_inputs": {"a": {"x": "\udc00"}}}`,
			"step_inputs", "/step_inputs/a/x", "surrogate"},
		{"NUL in a context key", "POST", "/v1/tasks", `{"name": "chain", "namespace": "test", "context": {"\u0000": 1}}`,
			"context", "/context", "NUL"},
		{"exponent beyond numeric", "POST", "/v1/tasks", `{"name": "chain", "namespace": "test", "context": {"n": 1e131072}}`,
			"context", "/context/n", "exponent"},
		{"200,000 digits", "POST", "/v1/tasks", `{"name": "chain", "namespace": "test", "context": {"n": ` + strings.Repeat("7", 200000) + `}}`,
			"context", "/context/n", "characters long"},
		{"nesting", "POST", "/v1/tasks", `{"name": "chain", "namespace": "test", "context": {"deep": ` + deep + `}}`,
			"context", "/context/deep" + strings.Repeat("/0", 998), "deeper"},
		{"duplicate key", "POST", "/v1/tasks", `{"name": "chain", "namespace": "test", "name": "chain"}`,
			"name", "/name", "duplicate"},
		{"duplicate key in the context", "POST", "/v1/tasks", `{"name": "chain", "namespace": "test", "context": {"a": 1, "a": 2}}`,
			"context", "/context/a", "duplicate"},
		{"miscased key", "POST", "/v1/tasks", `{"Name": "chain", "namespace": "test"}`, "Name", "", "unknown field"},
		{"miscased key NameSpace", "POST", "/v1/tasks", `{"name": "chain", "NameSpace": "test"}`, "NameSpace", "", "unknown field"},
		{"idempotency key too long", "POST", "/v1/tasks", `{"name": "chain", "namespace": "test", "idempotency_key": "` + randomText(t, 3000) + `"}`,
			"idempotency_key", "", "limit"},
		{"invalid UTF-8 actor", "POST", "/v1/tasks/1/cancel", "{\"actor\": \"\xff\"}", "actor", "/actor", "UTF-8"},
		{"miscased actor", "POST", "/v1/tasks/1/cancel", `{"Actor": "ops"}`, "Actor", "", "unknown field"},
		{"invalid UTF-8 query", "GET", "/v1/tasks?namespace=%ff", "", "", "", "UTF-8"},
		{"invalid UTF-8 step name", "POST", "/v1/tasks/1/steps/%ff/resolve", "", "", "", "UTF-8"},
		{"rpc: lone surrogate in the context", "POST", "/v1/rpc/initialize_task",
			`{"name": "chain", "namespace": "test", "context": {"a": ["\ud800"]}}`, "context", "/context/a/0", "surrogate"},
		{"rpc: lone surrogate in reported results", "POST", "/v1/rpc/report_results",
			`{"task_id": 1, "owner": "w", "results": [{"step_id": 1, "attempt": 1, "success": true, "results": {"x": "\ud800"}}]}`,
			"results", "/results/0/results/x", "surrogate"},
		{"rpc: huge number in reported results", "POST", "/v1/rpc/report_results",
			`{"task_id": 1, "owner": "w", "results": [{"step_id": 1, "attempt": 1, "success": true, "results": 1e-99999}]}`,
			"results", "/results/0/results", "exponent"},
		{"rpc: invalid UTF-8 in an error message", "POST", "/v1/rpc/report_results",
			"{\"task_id\": 1, \"owner\": \"w\", \"results\": [{\"step_id\": 1, \"attempt\": 1, \"error\": {\"message\": \"\xfe\"}}]}",
			"results", "/results/0/error/message", "UTF-8"},
		{"rpc: miscased nested key", "POST", "/v1/rpc/report_results",
			`{"task_id": 1, "owner": "w", "results": [{"step_id": 1, "attempt": 1, "Success": true}]}`,
			"results", "/results/0/Success", "unknown field"},
		{"rpc: NUL owner", "POST", "/v1/rpc/claim_steps", `{"task_id": 1, "owner": "w\u0000"}`, "owner", "/owner", "NUL"},
		{"rpc: miscased key", "POST", "/v1/rpc/task", `{"Task_ID": 1}`, "Task_ID", "", "unknown field"},
		{"rpc: duplicate key", "POST", "/v1/rpc/task", `{"task_id": 1, "task_id": 2}`, "task_id", "/task_id", "duplicate"},
	}
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		srv := serve(t, c, httpapi.Options{Version: "test", MaxBodyBytes: 4 << 20})
		api := caller{t: t, base: srv.URL}
		for _, tc := range cases {
			var body any
			if tc.body != "" {
				body = tc.body
			}
			res := api.do(tc.method, tc.path, body)
			require.Equal(t, 400, res.status, "%s: %.300s", tc.name, res.body)
			e := res.errorCode(t, 400, "invalid_request")
			require.Contains(t, e["message"], tc.msg, tc.name)
			d, _ := e["details"].(map[string]any)
			if tc.field != "" {
				require.Equal(t, tc.field, d["field"], "%s: %v", tc.name, e)
			}
			if tc.pointer != "" {
				require.Equal(t, tc.pointer, d["path"], "%s: %v", tc.name, e)
			}
		}
		// Numbers that would overflow a time.Duration.
		res := api.do("POST", "/v1/rpc/queue_claim", `{"owner": "w", "limit": 1, "lease_seconds": 1e300}`)
		e := res.errorCode(t, 400, "invalid_request")
		require.Equal(t, "lease_seconds", e["details"].(map[string]any)["field"])
		req, err := http.NewRequest("POST", srv.URL+"/v1/rpc/task", strings.NewReader(`{"task_id": 1}`))
		require.NoError(t, err)
		req.Header.Set(httpapi.TimeoutHeader, "9000000000000000000")
		hres, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = hres.Body.Close()
		require.Equal(t, 404, hres.StatusCode, "a huge %s is the longest timeout, not an overflow", httpapi.TimeoutHeader)

		ctx := context.Background()
		tasks, err := c.ListTasks(ctx, &tasker.TaskFilter{Limit: 10})
		require.NoError(t, err)
		require.Empty(t, tasks, "nothing was written")

		// The Go API refuses the same values with the same checks.
		goCases := []struct {
			name string
			req  tasker.TaskRequest
			is   error
			msg  string
		}{
			{"lone surrogate in the context", tasker.TaskRequest{Context: json.RawMessage(`{"a": "\ud800"}`)}, tasker.ErrInvalidContext, "/a: string contains a lone"},
			{"huge number in the context", tasker.TaskRequest{Context: json.RawMessage(`{"n": 1e131072}`)}, tasker.ErrInvalidContext, "exponent"},
			{"duplicate key in the context", tasker.TaskRequest{Context: json.RawMessage(`{"a": 1, "a": 2}`)}, tasker.ErrInvalidContext, "duplicate"},
			{"lone surrogate in step inputs", tasker.TaskRequest{StepInputs: map[string]json.RawMessage{"a": json.RawMessage(`["\udfff"]`)}},
				tasker.ErrInvalidRequest, "surrogate"},
			{"long idempotency key", tasker.TaskRequest{IdempotencyKey: randomText(t, 3000)}, tasker.ErrInvalidRequest, "idempotency_key"},
		}
		for _, tc := range goCases {
			tc.req.Namespace, tc.req.Name = "test", "chain"
			_, _, err := c.InitializeTask(ctx, &tc.req)
			require.True(t, errors.Is(err, tc.is), "%s: %v", tc.name, err)
			require.Contains(t, err.Error(), tc.msg, tc.name)
			require.NotContains(t, err.Error(), "SQLSTATE", tc.name)
		}
		tasks, err = c.ListTasks(ctx, &tasker.TaskFilter{Limit: 10})
		require.NoError(t, err)
		require.Empty(t, tasks, "nothing was written")

		// The limits are within what both databases store: the largest
		// accepted values round-trip.
		edge := `{"name": "chain", "namespace": "test", "idempotency_key": "` + randomText(t, 1024) + `",
			"context": {"big": 1e1000, "small": -1e-1000, "long": ` + strings.Repeat("9", 1000) + `,
			"pair": "\ud83d\ude00", "Case": 1, "case": 2}}`
		res = api.do("POST", "/v1/tasks", edge)
		require.Equal(t, 201, res.status, "%.300s", res.body)
		var d taskDoc
		res.into(t, &d)
		var got map[string]any
		dec := json.NewDecoder(strings.NewReader(string(d.Task.Context)))
		dec.UseNumber()
		require.NoError(t, dec.Decode(&got))
		require.Equal(t, "\U0001F600", got["pair"])
		require.Equal(t, strings.Repeat("9", 1000), string(got["long"].(json.Number)))
		require.Equal(t, json.Number("2"), got["case"])
	})
}
