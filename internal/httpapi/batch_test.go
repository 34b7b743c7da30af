package httpapi_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/httpapi"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// batchAnswer is the document of POST /v1/tasks/batch as a client reads it.
type batchAnswer struct {
	Created  int `json:"created"`
	Existing int `json:"existing"`
	Failed   int `json:"failed"`
	Results  []struct {
		Index      int          `json:"index"`
		Status     string       `json:"status"`
		Task       *tasker.Task `json:"task"`
		HTTPStatus int          `json:"http_status"`
		Error      *struct {
			Code    string         `json:"code"`
			Message string         `json:"message"`
			Details map[string]any `json:"details"`
		} `json:"error"`
	} `json:"results"`
}

// TestBatchCreate: POST /v1/tasks/batch answers one outcome per item, in
// order: created, existing (a key that exists, a key repeated in the
// batch) and errors with the single endpoint's code, message, details and
// status, each failing alone.
func TestBatchCreate(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		srv := serve(t, c, httpapi.Options{})
		api := caller{t: t, base: srv.URL}
		first, res := api.create(map[string]any{"namespace": "test", "name": "order", "context": map[string]any{"order_id": 1},
			"idempotency_key": "order-1"})
		require.Equal(t, 201, res.status, "%s", res.body)

		body := `[
 {"namespace":"test","name":"order","context":{"order_id":2}},
 {"namespace":"test","name":"order","context":{"order_id":1},"idempotency_key":"order-1"},
 {"namespace":"test","name":"order","context":{"order_id":0}},
 {"namespace":"test","name":"nope"},
 {"namespace":"test","name":"order","context":{"order_id":3},"colour":"red"},
 {"namespace":"test","context":{"order_id":4}},
 null,
 {"namespace":"test","name":"order","context":{"order_id":5},"idempotency_key":"dup"},
 {"namespace":"test","name":"order","context":{"order_id":5},"idempotency_key":"dup"},
 {"namespace":"test","name":"chain","bypass_steps":["ghost"]}
]`
		res = api.do("POST", "/v1/tasks/batch", body)
		require.Equal(t, 200, res.status, "%s", res.body)
		var a batchAnswer
		res.into(t, &a)
		require.Len(t, a.Results, 10)
		require.Equal(t, 2, a.Created, "%s", res.body)
		require.Equal(t, 2, a.Existing)
		require.Equal(t, 6, a.Failed)
		for i, r := range a.Results {
			require.Equal(t, i, r.Index)
		}
		status := func(i int) string { return a.Results[i].Status }
		require.Equal(t, "created", status(0))
		require.Equal(t, "existing", status(1))
		require.Equal(t, first.Task.ID, a.Results[1].Task.ID)
		require.Equal(t, "created", status(7))
		require.Equal(t, "existing", status(8))
		require.Equal(t, a.Results[7].Task.ID, a.Results[8].Task.ID)
		for i, want := range map[int]struct {
			code   string
			status int
			field  string
		}{
			2: {"invalid_context", 422, ""}, 3: {"not_found", 404, ""}, 4: {"invalid_request", 400, "colour"},
			5: {"invalid_request", 400, "name"}, 6: {"invalid_request", 400, ""}, 9: {"invalid_request", 400, "bypass_steps"},
		} {
			r := a.Results[i]
			require.Equal(t, "error", r.Status, "item %d", i)
			require.Nil(t, r.Task)
			require.NotNil(t, r.Error, "item %d", i)
			require.Equal(t, want.code, r.Error.Code, "item %d: %s", i, r.Error.Message)
			require.Equal(t, want.status, r.HTTPStatus, "item %d", i)
			require.NotEmpty(t, r.Error.Message)
			if want.field != "" {
				require.Equal(t, want.field, r.Error.Details["field"], "item %d", i)
			}
		}
		require.NotEmpty(t, a.Results[2].Error.Details["violations"])

		got, err := c.Task(t.Context(), a.Results[0].Task.ID)
		require.NoError(t, err)
		require.JSONEq(t, `{"order_id":2}`, string(got.Context))

		// The object form.
		res = api.do("POST", "/v1/tasks/batch", `{"tasks":[{"namespace":"test","name":"chain"}]}`)
		require.Equal(t, 200, res.status, "%s", res.body)
		a = batchAnswer{}
		res.into(t, &a)
		require.Equal(t, 1, a.Created)
		require.Equal(t, tasker.TaskState("pending"), a.Results[0].Task.State)
	})
}

// TestBatchCreateLimits: whole-batch problems are answered with the one
// error shape and a 4xx: malformed, empty, the wrong shape, too many items,
// too large a body, no token.
func TestBatchCreateLimits(t *testing.T) {
	t.Parallel()
	c := openClient(t, "sqlite:"+testdb.SQLitePath(t))
	srv := serve(t, c, httpapi.Options{BatchMaxTasks: 3, BatchMaxBodyBytes: 2048, MaxBodyBytes: 1024})
	api := caller{t: t, base: srv.URL}
	item := `{"namespace":"test","name":"chain"}`
	api.do("POST", "/v1/tasks/batch", "").errorCode(t, 400, "invalid_request")
	api.do("POST", "/v1/tasks/batch", "[]").errorCode(t, 400, "invalid_request")
	api.do("POST", "/v1/tasks/batch", "[{").errorCode(t, 400, "invalid_request")
	api.do("POST", "/v1/tasks/batch", `"x"`).errorCode(t, 400, "invalid_request")
	api.do("POST", "/v1/tasks/batch", "["+item+"] []").errorCode(t, 400, "invalid_request")
	e := api.do("POST", "/v1/tasks/batch", `{"task":[]}`).errorCode(t, 400, "invalid_request")
	require.Equal(t, "task", e["details"].(map[string]any)["field"])
	api.do("POST", "/v1/tasks/batch", `{}`).errorCode(t, 400, "invalid_request")
	e = api.do("POST", "/v1/tasks/batch", "["+strings.Repeat(item+",", 3)+item+"]").errorCode(t, 413, "payload_too_large")
	require.EqualValues(t, 3, e["details"].(map[string]any)["limit_tasks"])
	// Bigger than MaxBodyBytes but within the batch limit: accepted.
	pad := fmt.Sprintf(`{"namespace":"test","name":"chain","reason":%q}`, strings.Repeat("r", 700))
	res := api.do("POST", "/v1/tasks/batch", "["+pad+","+pad+"]")
	require.Equal(t, 200, res.status, "%s", res.body)
	api.do("POST", "/v1/tasks/batch", "["+pad+","+pad+","+pad+"]").errorCode(t, 413, "payload_too_large")
	// The single endpoint keeps its own limit.
	api.do("POST", "/v1/tasks", pad[:len(pad)-1]+`,"initiator":`+fmt.Sprintf("%q", strings.Repeat("i", 500))+"}").
		errorCode(t, 413, "payload_too_large")
	api.do("GET", "/v1/tasks/batch", nil).errorCode(t, 400, "invalid_request") // {id} = "batch"

	secured := serve(t, c, httpapi.Options{Token: "batch-token"})
	caller{t: t, base: secured.URL}.do("POST", "/v1/tasks/batch", "["+item+"]").errorCode(t, 401, "unauthorized")
	res = caller{t: t, base: secured.URL, token: "batch-token"}.do("POST", "/v1/tasks/batch", "["+item+"]")
	require.Equal(t, 200, res.status, "%s", res.body)
}
