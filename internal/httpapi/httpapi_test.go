package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/httpapi"
	"github.com/tasker-systems/tasker/internal/testdb"
)

var templates = map[string]string{
	"chain_v1.yml": `name: chain
namespace_name: test
version: 1.0.0
description: three no-op steps in a row
step_templates:
  - name: a
    handler_class: tasker:noop
  - name: b
    handler_class: tasker:noop
    depends_on_steps: [a]
  - name: c
    handler_class: tasker:noop
    handler_config: {result: {done: true}}
    depends_on_steps: [b]
`,
	"chain_v1_1.yml": `name: chain
namespace_name: test
version: 1.1.0
step_templates:
  - name: a
    handler_class: tasker:noop
  - name: optional
    handler_class: tasker:noop
    skippable: true
    depends_on_steps: [a]
`,
	"listing.yml": `name: listing
namespace_name: other
version: 1.0.0
step_templates:
  - name: only
    handler_class: tasker:noop
`,
	"flaky.yml": `name: flaky
namespace_name: test
version: 1.0.0
step_templates:
  - name: wobbly
    handler_class: tasker:fail
    handler_config: {times: 1}
    default_retry_limit: 3
  - name: after
    handler_class: tasker:noop
    depends_on_steps: [wobbly]
`,
	"doomed.yml": `name: doomed
namespace_name: test
version: 1.0.0
step_templates:
  - name: boom
    handler_class: tasker:fail
    handler_config: {always: true, permanent: true}
  - name: after
    handler_class: tasker:noop
    depends_on_steps: [boom]
`,
	"once.yml": `name: fails_once
namespace_name: test
version: 1.0.0
step_templates:
  - name: first
    handler_class: test:fails_once
    default_retry_limit: 1
  - name: second
    handler_class: tasker:noop
    depends_on_steps: [first]
`,
	"schema.yml": `name: order
namespace_name: test
version: 1.0.0
schema:
  type: object
  required: [order_id]
  properties:
    order_id: {type: integer, minimum: 1}
    email: {type: string}
step_templates:
  - name: ship
    handler_class: tasker:noop
`,
}

// env is one client served over a real HTTP server.
type env struct {
	c   *tasker.Client
	srv *httptest.Server
	log *bytes.Buffer
}

type syncBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.String()
}

func openClient(t *testing.T, url string) *tasker.Client {
	t.Helper()
	dir := t.TempDir()
	for name, doc := range templates {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(doc), 0o600))
	}
	c, err := tasker.Open(context.Background(), tasker.Config{DatabaseURL: url, AutoMigrate: true, TemplatesDir: dir,
		Backoff: tasker.BackoffConfig{Base: 5 * time.Millisecond, Max: 50 * time.Millisecond, Min: time.Millisecond,
			Multiplier: 2, Jitter: 0.1, MaxServerDelay: 10 * time.Second, PriorityStep: 0.25}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	// fails_once fails the first attempt of each task permanently, then succeeds.
	var mu sync.Mutex
	seen := map[int64]bool{}
	c.RegisterHandler("test:fails_once", tasker.StepHandlerFunc(func(_ context.Context, sc *tasker.StepContext) (any, error) {
		mu.Lock()
		defer mu.Unlock()
		if !seen[sc.TaskID] {
			seen[sc.TaskID] = true
			return nil, tasker.Permanent(fmt.Errorf("first attempt of task %d fails", sc.TaskID))
		}
		return map[string]any{"ok": true}, nil
	}))
	return c
}

func serve(t *testing.T, c *tasker.Client, opts httpapi.Options) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(httpapi.New(c, opts))
	t.Cleanup(srv.Close)
	return srv
}

// response is one HTTP answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r *response) doc(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.body, &m), "body %s", r.body)
	return m
}

func (r *response) into(t *testing.T, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(r.body, v), "body %s", r.body)
}

// errorCode checks the error shape and returns the error object.
func (r *response) errorCode(t *testing.T, status int, code string) map[string]any {
	t.Helper()
	require.Equal(t, status, r.status, "body %s", r.body)
	require.Equal(t, "application/json", r.header.Get("Content-Type"))
	m := r.doc(t)
	require.Len(t, m, 1, "an error document has only the error key: %s", r.body)
	e, ok := m["error"].(map[string]any)
	require.True(t, ok, "error object in %s", r.body)
	require.Equal(t, code, e["code"])
	require.NotEmpty(t, e["message"])
	return e
}

type caller struct {
	t     *testing.T
	base  string
	token string
}

// raw sends body as is (a string or []byte), or JSON-encodes it.
func (c caller) do(method, path string, body any) *response {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		require.NoError(c.t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	require.NoError(c.t, err)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(c.t, err)
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	require.NoError(c.t, err)
	require.Equal(c.t, "application/json", res.Header.Get("Content-Type"), "%s %s", method, path)
	require.NotEmpty(c.t, res.Header.Get(httpapi.RequestIDHeader))
	if method != http.MethodHead {
		require.True(c.t, json.Valid(out), "%s %s answered invalid JSON: %s", method, path, out)
	}
	return &response{status: res.StatusCode, header: res.Header, body: out}
}

// Documents as a client decodes them.
type (
	taskDoc struct {
		Task    tasker.TaskDetail `json:"task"`
		Created *bool             `json:"created"`
	}
	listDoc struct {
		Tasks       []tasker.Task `json:"tasks"`
		NextAfterID *int64        `json:"next_after_id"`
	}
	handleDoc struct {
		tasker.HandleResult
		Finalized bool `json:"finalized"`
	}
)

func (c caller) create(req map[string]any) (taskDoc, *response) {
	c.t.Helper()
	res := c.do("POST", "/v1/tasks", req)
	var d taskDoc
	if res.status < 300 {
		res.into(c.t, &d)
	}
	return d, res
}

// handleUntilDone calls handle until the result is finalized, waiting out
// retry delays.
func (c caller) handleUntilDone(id int64) handleDoc {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		res := c.do("POST", fmt.Sprintf("/v1/tasks/%d/handle", id), nil)
		require.Equal(c.t, 200, res.status, "handle: %s", res.body)
		var h handleDoc
		res.into(c.t, &h)
		require.Equal(c.t, id, h.TaskID)
		if h.Finalized {
			return h
		}
		require.True(c.t, time.Now().Before(deadline), "task %d never finalized: %s", id, res.body)
		if h.NextRunAt != nil {
			time.Sleep(max(time.Until(*h.NextRunAt), time.Millisecond))
		}
	}
}

func stepByName(t *testing.T, d tasker.TaskDetail, name string) *tasker.Step {
	t.Helper()
	for _, st := range d.Steps {
		if st.Name == name {
			return st
		}
	}
	t.Fatalf("step %s not in task %d", name, d.ID)
	return nil
}

func TestAPI(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		srv := serve(t, c, httpapi.Options{Version: "1.2.3-test"})

		t.Run("health", func(t *testing.T) {
			api := caller{t: t, base: srv.URL}
			res := api.do("GET", "/health/live", nil)
			require.Equal(t, 200, res.status)
			require.Equal(t, map[string]any{"status": "ok"}, res.doc(t))
			res = api.do("GET", "/health/ready", nil)
			require.Equal(t, 200, res.status)
			require.Equal(t, map[string]any{"status": "ok"}, res.doc(t))
		})

		t.Run("info", func(t *testing.T) {
			api := caller{t: t, base: srv.URL}
			res := api.do("GET", "/v1/info", nil)
			require.Equal(t, 200, res.status)
			require.Equal(t, map[string]any{"protocol": "tasker.v1", "version": "1.2.3-test", "dialect": c.Dialect()}, res.doc(t))
		})

		t.Run("create_handle_get", func(t *testing.T) {
			api := caller{t: t, base: srv.URL}
			d, res := api.create(map[string]any{"namespace": "test", "name": "chain", "version": "1.0.0",
				"context": map[string]any{"customer": 7}, "initiator": "api-test", "source_system": "tests",
				"reason": "happy path", "tags": []string{"x", "y"}, "priority": 2,
				"step_inputs": map[string]any{"b": map[string]any{"n": 1}}})
			require.Equal(t, 201, res.status, "%s", res.body)
			require.True(t, *d.Created)
			require.Equal(t, fmt.Sprintf("/v1/tasks/%d", d.Task.ID), res.header.Get("Location"))
			require.Equal(t, tasker.TaskState("pending"), d.Task.State)
			require.Equal(t, "1.0.0", d.Task.Version)
			require.Equal(t, []string{"x", "y"}, d.Task.Tags)
			require.Equal(t, 2, d.Task.Priority)
			require.JSONEq(t, `{"customer":7}`, string(d.Task.Context))
			require.Len(t, d.Task.Steps, 3)
			require.JSONEq(t, `{"n":1}`, string(stepByName(t, d.Task, "b").Inputs))

			h := api.handleUntilDone(d.Task.ID)
			require.Equal(t, tasker.TaskState("complete"), h.Status)
			require.Equal(t, "complete", string(h.Outcome))
			require.Equal(t, 3, h.StepsExecuted)

			res = api.do("GET", fmt.Sprintf("/v1/tasks/%d", d.Task.ID), nil)
			require.Equal(t, 200, res.status)
			var got taskDoc
			res.into(t, &got)
			require.Nil(t, got.Created, "created is only reported by create")
			require.Equal(t, tasker.TaskState("complete"), got.Task.State)
			require.NotNil(t, got.Task.CompletedAt)
			for _, st := range got.Task.Steps {
				require.Equal(t, tasker.StepState("complete"), st.State, "step %s", st.Name)
				require.Equal(t, 1, st.Attempts)
			}
			require.JSONEq(t, `{"done":true}`, string(stepByName(t, got.Task, "c").Results))
			require.Equal(t, []string{"b"}, stepByName(t, got.Task, "c").Parents)

			// Handling a finished task is harmless.
			res = api.do("POST", fmt.Sprintf("/v1/tasks/%d/handle", d.Task.ID), map[string]any{})
			require.Equal(t, 200, res.status)
			var again handleDoc
			res.into(t, &again)
			require.Equal(t, "none", string(again.Outcome))
			require.True(t, again.Finalized)
		})

		t.Run("default_version_and_bypass", func(t *testing.T) {
			api := caller{t: t, base: srv.URL}
			d, res := api.create(map[string]any{"namespace": "test", "name": "chain", "bypass_steps": []string{"optional"}})
			require.Equal(t, 201, res.status, "%s", res.body)
			require.Equal(t, "1.1.0", d.Task.Version, "highest version by default")
			require.Equal(t, tasker.StepState("resolved_manually"), stepByName(t, d.Task, "optional").State)
			require.Equal(t, tasker.TaskState("complete"), api.handleUntilDone(d.Task.ID).Status)

			_, res = api.create(map[string]any{"namespace": "test", "name": "chain", "version": "1.0.0", "bypass_steps": []string{"b"}})
			e := res.errorCode(t, 400, "invalid_request")
			require.Equal(t, map[string]any{"field": "bypass_steps", "step": "b"}, e["details"])
		})

		t.Run("idempotency", func(t *testing.T) {
			api := caller{t: t, base: srv.URL}
			req := map[string]any{"namespace": "test", "name": "chain", "idempotency_key": "order-42-" + c.Dialect()}
			first, res := api.create(req)
			require.Equal(t, 201, res.status, "%s", res.body)
			require.True(t, *first.Created)
			second, res := api.create(req)
			require.Equal(t, 200, res.status, "%s", res.body)
			require.False(t, *second.Created)
			require.Equal(t, first.Task.ID, second.Task.ID)
			require.Equal(t, fmt.Sprintf("/v1/tasks/%d", first.Task.ID), res.header.Get("Location"))
		})

		t.Run("list", func(t *testing.T) {
			api := caller{t: t, base: srv.URL}
			before := time.Now().Add(-time.Second).UTC()
			var ids []int64
			for range 5 {
				d, res := api.create(map[string]any{"namespace": "other", "name": "listing"})
				require.Equal(t, 201, res.status)
				ids = append(ids, d.Task.ID)
			}
			for _, id := range ids[:2] {
				require.Equal(t, tasker.TaskState("complete"), api.handleUntilDone(id).Status)
			}
			list := func(q string) listDoc {
				t.Helper()
				res := api.do("GET", "/v1/tasks?"+q, nil)
				require.Equal(t, 200, res.status, "%s: %s", q, res.body)
				var l listDoc
				res.into(t, &l)
				return l
			}
			idsOf := func(l listDoc) []int64 {
				out := []int64{}
				for _, tk := range l.Tasks {
					out = append(out, tk.ID)
				}
				return out
			}
			newestFirst := []int64{ids[4], ids[3], ids[2], ids[1], ids[0]}
			l := list("namespace=other&name=listing")
			require.Equal(t, newestFirst, idsOf(l))
			require.Nil(t, l.NextAfterID)

			l = list("namespace=other&state=complete")
			require.Equal(t, []int64{ids[1], ids[0]}, idsOf(l))
			l = list("namespace=other&state=pending,error&state=blocked")
			require.Equal(t, []int64{ids[4], ids[3], ids[2]}, idsOf(l))

			// Pagination walks every task once, newest first.
			var walked []int64
			q := "name=listing&limit=2"
			for pages := 0; ; pages++ {
				require.Less(t, pages, 5)
				l = list(q)
				walked = append(walked, idsOf(l)...)
				if l.NextAfterID == nil {
					break
				}
				require.Len(t, l.Tasks, 2)
				q = fmt.Sprintf("name=listing&limit=2&after_id=%d", *l.NextAfterID)
			}
			require.Equal(t, newestFirst, walked)
			l = list("name=listing&limit=5")
			require.Len(t, l.Tasks, 5)
			require.Nil(t, l.NextAfterID, "no next page when exactly limit tasks exist")

			future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
			require.Empty(t, list("name=listing&created_after="+future).Tasks)
			require.Equal(t, newestFirst, idsOf(list("name=listing&created_before="+future+"&created_after="+before.Format(time.RFC3339Nano))))
			require.Empty(t, list("name=nothing-like-this").Tasks)

			for _, bad := range []string{"state=sleeping", "limit=0", "limit=501", "limit=x", "after_id=-1",
				"created_after=yesterday", "colour=red", "name=a&name=b"} {
				res := api.do("GET", "/v1/tasks?"+bad, nil)
				e := res.errorCode(t, 400, "invalid_request")
				require.Contains(t, e, "details", bad)
			}
		})

		t.Run("explain_and_transitions", func(t *testing.T) {
			api := caller{t: t, base: srv.URL}
			d, res := api.create(map[string]any{"namespace": "test", "name": "chain", "version": "1.0.0"})
			require.Equal(t, 201, res.status)
			res = api.do("GET", fmt.Sprintf("/v1/tasks/%d/explain", d.Task.ID), nil)
			require.Equal(t, 200, res.status)
			var ex struct {
				TaskID int64                  `json:"task_id"`
				Status tasker.TaskState       `json:"status"`
				Steps  []tasker.StepReadiness `json:"steps"`
			}
			res.into(t, &ex)
			require.Equal(t, d.Task.ID, ex.TaskID)
			require.Equal(t, tasker.TaskState("pending"), ex.Status)
			require.Len(t, ex.Steps, 3)
			byName := map[string]tasker.StepReadiness{}
			for _, s := range ex.Steps {
				require.NotEmpty(t, s.Reason, "step %s", s.Name)
				byName[s.Name] = s
			}
			require.True(t, byName["a"].Ready)
			require.False(t, byName["b"].Ready)
			require.Equal(t, []string{"a"}, byName["b"].BlockingParents)

			api.handleUntilDone(d.Task.ID)
			res = api.do("GET", fmt.Sprintf("/v1/tasks/%d/transitions", d.Task.ID), nil)
			require.Equal(t, 200, res.status)
			var trs struct {
				Task  []tasker.Transition `json:"task"`
				Steps []tasker.Transition `json:"steps"`
			}
			res.into(t, &trs)
			require.Equal(t, "pending", trs.Task[0].ToState)
			require.Equal(t, "complete", trs.Task[len(trs.Task)-1].ToState)
			require.True(t, trs.Task[len(trs.Task)-1].MostRecent)
			require.Len(t, trs.Steps, 9, "initialize, claim, succeed for each of 3 steps")
		})

		t.Run("retry_wait_then_complete", func(t *testing.T) {
			api := caller{t: t, base: srv.URL}
			d, res := api.create(map[string]any{"namespace": "test", "name": "flaky"})
			require.Equal(t, 201, res.status)
			res = api.do("POST", fmt.Sprintf("/v1/tasks/%d/handle", d.Task.ID), nil)
			require.Equal(t, 200, res.status)
			var h handleDoc
			res.into(t, &h)
			// With a 5 ms backoff the retry may already be due when the
			// finalizer looks, in which case one call runs both attempts.
			if h.Outcome == "retry_viable" {
				require.False(t, h.Finalized)
				require.NotNil(t, h.NextRunAt)
				require.Equal(t, tasker.TaskState("waiting_for_retry"), h.Status)
			} else {
				require.Equal(t, "complete", string(h.Outcome))
				require.Equal(t, 3, h.StepsExecuted)
			}
			require.Equal(t, tasker.TaskState("complete"), api.handleUntilDone(d.Task.ID).Status)
			res = api.do("GET", fmt.Sprintf("/v1/tasks/%d", d.Task.ID), nil)
			var got taskDoc
			res.into(t, &got)
			require.Equal(t, 2, stepByName(t, got.Task, "wobbly").Attempts)
		})

		t.Run("failed_retry_complete", func(t *testing.T) {
			api := caller{t: t, base: srv.URL}
			d, res := api.create(map[string]any{"namespace": "test", "name": "fails_once"})
			require.Equal(t, 201, res.status)
			h := api.handleUntilDone(d.Task.ID)
			require.Equal(t, tasker.TaskState("error"), h.Status)
			require.Equal(t, "failed", string(h.Outcome))

			path := fmt.Sprintf("/v1/tasks/%d/retry", d.Task.ID)
			res = api.do("POST", path, map[string]any{"steps": []string{"second"}})
			e := res.errorCode(t, 409, "invalid_transition")
			require.Equal(t, "step", e["details"].(map[string]any)["entity"])
			res = api.do("POST", path, map[string]any{"steps": []string{"nope"}})
			e = res.errorCode(t, 404, "not_found")
			require.Equal(t, map[string]any{"task_id": float64(d.Task.ID), "step": "nope"}, e["details"])

			res = api.do("POST", path, map[string]any{"steps": []string{"first", "first"}, "actor": "ops", "reason": "flaky upstream"})
			require.Equal(t, 200, res.status, "%s", res.body)
			require.JSONEq(t, `{"retried":["first"]}`, string(res.body))
			require.Equal(t, tasker.TaskState("complete"), api.handleUntilDone(d.Task.ID).Status)

			// Nothing left to retry.
			res = api.do("POST", path, nil)
			res.errorCode(t, 409, "invalid_transition")

			res = api.do("GET", fmt.Sprintf("/v1/tasks/%d/transitions", d.Task.ID), nil)
			require.Contains(t, string(res.body), `"actor":"ops"`)
			require.Contains(t, string(res.body), `"reason":"flaky upstream"`)
		})

		t.Run("retry_all_failed", func(t *testing.T) {
			api := caller{t: t, base: srv.URL}
			d, _ := api.create(map[string]any{"namespace": "test", "name": "fails_once"})
			require.Equal(t, tasker.TaskState("error"), api.handleUntilDone(d.Task.ID).Status)
			res := api.do("POST", fmt.Sprintf("/v1/tasks/%d/retry", d.Task.ID), map[string]any{})
			require.Equal(t, 200, res.status, "%s", res.body)
			require.JSONEq(t, `{"retried":["first"]}`, string(res.body))
			require.Equal(t, tasker.TaskState("complete"), api.handleUntilDone(d.Task.ID).Status)
		})

		t.Run("cancel", func(t *testing.T) {
			api := caller{t: t, base: srv.URL}
			d, _ := api.create(map[string]any{"namespace": "test", "name": "chain", "version": "1.0.0"})
			path := fmt.Sprintf("/v1/tasks/%d/cancel", d.Task.ID)
			res := api.do("POST", path, map[string]any{"actor": "alice", "reason": "customer changed their mind"})
			require.Equal(t, 200, res.status, "%s", res.body)
			var got taskDoc
			res.into(t, &got)
			require.Equal(t, tasker.TaskState("cancelled"), got.Task.State)
			for _, st := range got.Task.Steps {
				require.Equal(t, tasker.StepState("cancelled"), st.State)
			}
			res = api.do("POST", path, map[string]any{"actor": "alice"})
			e := res.errorCode(t, 409, "invalid_transition")
			require.Equal(t, map[string]any{"entity": "task", "id": float64(d.Task.ID), "from": "cancelled", "event": "cancel"}, e["details"])
			// Handle of a cancelled task does nothing.
			res = api.do("POST", fmt.Sprintf("/v1/tasks/%d/handle", d.Task.ID), nil)
			require.Equal(t, 200, res.status)
			require.Contains(t, string(res.body), `"outcome":"none"`)
		})

		t.Run("resolve_task", func(t *testing.T) {
			api := caller{t: t, base: srv.URL}
			d, _ := api.create(map[string]any{"namespace": "test", "name": "doomed"})
			require.Equal(t, tasker.TaskState("error"), api.handleUntilDone(d.Task.ID).Status)
			path := fmt.Sprintf("/v1/tasks/%d/resolve", d.Task.ID)
			res := api.do("POST", path, map[string]any{"actor": "alice", "reason": "handled by hand"})
			require.Equal(t, 200, res.status, "%s", res.body)
			var got taskDoc
			res.into(t, &got)
			require.Equal(t, tasker.TaskState("resolved_manually"), got.Task.State)
			res = api.do("POST", path, map[string]any{"actor": "alice"})
			e := res.errorCode(t, 409, "invalid_transition")
			require.Equal(t, map[string]any{"entity": "task", "id": float64(d.Task.ID), "from": "resolved_manually", "event": "resolve"}, e["details"])
			res = api.do("POST", "/v1/tasks/999999/resolve", map[string]any{})
			res.errorCode(t, 404, "not_found")
		})

		t.Run("resolve", func(t *testing.T) {
			api := caller{t: t, base: srv.URL}
			d, _ := api.create(map[string]any{"namespace": "test", "name": "doomed"})
			h := api.handleUntilDone(d.Task.ID)
			require.Equal(t, tasker.TaskState("error"), h.Status)

			res := api.do("POST", fmt.Sprintf("/v1/tasks/%d/steps/missing/resolve", d.Task.ID), nil)
			res.errorCode(t, 404, "not_found")

			res = api.do("POST", fmt.Sprintf("/v1/tasks/%d/steps/boom/resolve", d.Task.ID),
				map[string]any{"actor": "bob", "reason": "done by hand"})
			require.Equal(t, 200, res.status, "%s", res.body)
			var st struct {
				Step tasker.Step `json:"step"`
			}
			res.into(t, &st)
			require.Equal(t, "boom", st.Step.Name)
			require.Equal(t, tasker.StepState("resolved_manually"), st.Step.State)
			require.Contains(t, string(st.Step.Error), "planned failure")

			require.Equal(t, tasker.TaskState("complete"), api.handleUntilDone(d.Task.ID).Status)
			res = api.do("GET", fmt.Sprintf("/v1/tasks/%d", d.Task.ID), nil)
			var got taskDoc
			res.into(t, &got)
			require.Equal(t, tasker.StepState("complete"), stepByName(t, got.Task, "after").State)
			// A complete step of a complete task cannot be resolved.
			res = api.do("POST", fmt.Sprintf("/v1/tasks/%d/steps/after/resolve", d.Task.ID), nil)
			res.errorCode(t, 409, "invalid_transition")
		})

		t.Run("templates", func(t *testing.T) {
			api := caller{t: t, base: srv.URL}
			res := api.do("GET", "/v1/templates", nil)
			require.Equal(t, 200, res.status)
			var list struct {
				Templates []map[string]any `json:"templates"`
			}
			res.into(t, &list)
			var keys []string
			for _, tm := range list.Templates {
				keys = append(keys, fmt.Sprintf("%s/%s@%s", tm["namespace"], tm["name"], tm["version"]))
				require.NotContains(t, tm, "file", "server paths are not exposed")
			}
			require.Equal(t, []string{"other/listing@1.0.0", "test/chain@1.0.0", "test/chain@1.1.0", "test/doomed@1.0.0",
				"test/fails_once@1.0.0", "test/flaky@1.0.0", "test/order@1.0.0"}, keys)

			res = api.do("GET", "/v1/templates/test/chain", nil)
			require.Equal(t, 200, res.status)
			require.Equal(t, "1.1.0", res.doc(t)["template"].(map[string]any)["version"])
			res = api.do("GET", "/v1/templates/test/chain?version=1.0.0", nil)
			require.Equal(t, 200, res.status)
			tm := res.doc(t)["template"].(map[string]any)
			require.Equal(t, "three no-op steps in a row", tm["description"])
			steps := tm["steps"].([]any)
			require.Len(t, steps, 3)
			require.Equal(t, map[string]any{"name": "c", "handler_class": "tasker:noop",
				"handler_config": map[string]any{"result": map[string]any{"done": true}}, "depends_on": []any{"b"},
				"retryable": true, "max_attempts": float64(3), "timeout_seconds": float64(0), "skippable": false}, steps[2])

			res = api.do("GET", "/v1/templates/test/order", nil)
			require.Contains(t, res.doc(t)["template"], "context_schema")

			res = api.do("GET", "/v1/templates/test/chain?version=9.9.9", nil)
			e := res.errorCode(t, 404, "not_found")
			require.Equal(t, map[string]any{"namespace": "test", "name": "chain", "version": "9.9.9",
				"available": []any{"1.0.0", "1.1.0"}}, e["details"])
			res = api.do("GET", "/v1/templates/test/nothing", nil)
			e = res.errorCode(t, 404, "not_found")
			require.Equal(t, []any{}, e["details"].(map[string]any)["available"])
			res = api.do("GET", "/v1/templates/test/chain?v=1", nil)
			res.errorCode(t, 400, "invalid_request")

			// A task request naming a missing version gets the same details.
			_, res = api.create(map[string]any{"namespace": "test", "name": "chain", "version": "3.0.0"})
			e = res.errorCode(t, 404, "not_found")
			require.Equal(t, []any{"1.0.0", "1.1.0"}, e["details"].(map[string]any)["available"])
		})

		t.Run("invalid_context", func(t *testing.T) {
			api := caller{t: t, base: srv.URL}
			_, res := api.create(map[string]any{"namespace": "test", "name": "order",
				"context": map[string]any{"order_id": "seven", "email": 5}})
			e := res.errorCode(t, 422, "invalid_context")
			d := e["details"].(map[string]any)
			require.Equal(t, "test/order@1.0.0", d["template"])
			vs := d["violations"].([]any)
			paths := map[string]bool{}
			for _, v := range vs {
				m := v.(map[string]any)
				require.NotEmpty(t, m["message"])
				paths[m["path"].(string)] = true
			}
			require.Equal(t, map[string]bool{"/order_id": true, "/email": true}, paths)

			_, res = api.create(map[string]any{"namespace": "test", "name": "order", "context": map[string]any{}})
			e = res.errorCode(t, 422, "invalid_context")
			require.NotEmpty(t, e["details"].(map[string]any)["violations"])
			_, res = api.create(map[string]any{"namespace": "test", "name": "chain", "context": []int{1}})
			res.errorCode(t, 422, "invalid_context")

			d2, res := api.create(map[string]any{"namespace": "test", "name": "order", "context": map[string]any{"order_id": 7}})
			require.Equal(t, 201, res.status, "%s", res.body)
			require.JSONEq(t, `{"order_id":7}`, string(d2.Task.Context))
			// A null context is an omitted one.
			d3, res := api.create(map[string]any{"namespace": "test", "name": "chain", "context": nil})
			require.Equal(t, 201, res.status, "%s", res.body)
			require.JSONEq(t, `{}`, string(d3.Task.Context))
		})

		t.Run("request_errors", func(t *testing.T) {
			api := caller{t: t, base: srv.URL}
			res := api.do("POST", "/v1/tasks", `{"namespace": "test", "name": `)
			res.errorCode(t, 400, "invalid_request")
			res = api.do("POST", "/v1/tasks", `{"namespace": "test" "name": "chain"}`)
			e := res.errorCode(t, 400, "invalid_request")
			require.Contains(t, e["message"], "malformed JSON")
			res = api.do("POST", "/v1/tasks", `{"namespace": "test", "name": "chain", "colour": "red"}`)
			e = res.errorCode(t, 400, "invalid_request")
			require.Equal(t, map[string]any{"field": "colour"}, e["details"])
			res = api.do("POST", "/v1/tasks", `{"name": "chain", "priority": "high"}`)
			e = res.errorCode(t, 400, "invalid_request")
			require.Equal(t, map[string]any{"field": "priority"}, e["details"])
			res = api.do("POST", "/v1/tasks", `{"name": "chain"} {"name": "chain"}`)
			res.errorCode(t, 400, "invalid_request")
			res = api.do("POST", "/v1/tasks", `[1, 2]`)
			res.errorCode(t, 400, "invalid_request")
			res = api.do("POST", "/v1/tasks", ``)
			res.errorCode(t, 400, "invalid_request")
			res = api.do("POST", "/v1/tasks", `{"namespace": "test"}`)
			res.errorCode(t, 400, "invalid_request")
			res = api.do("POST", "/v1/tasks", `{"name": "chain", "priority": 4294967296}`)
			res.errorCode(t, 400, "invalid_request")
			res = api.do("POST", "/v1/tasks/1/cancel", `{"actor": "x", "why": "y"}`)
			res.errorCode(t, 400, "invalid_request")
			res = api.do("POST", "/v1/tasks/1/handle", `{"force": true}`)
			res.errorCode(t, 400, "invalid_request")
			// NUL cannot be stored by PostgreSQL: refused on every database.
			for _, body := range []string{`{"name": "chain", "namespace": "test", "context": {"a": "x\u0000"}}`,
				`{"name": "chain", "namespace": "test", "context": {"\u0000": 1}}`,
				`{"name": "chain", "namespace": "test", "initiator": "\u0000"}`} {
				res = api.do("POST", "/v1/tasks", body)
				e = res.errorCode(t, 400, "invalid_request")
				require.Contains(t, e["message"], "NUL", body)
			}
			res = api.do("POST", "/v1/tasks", `{"name": "chain", "namespace": "test", "reason": "a \\u0000 b"}`)
			require.Equal(t, 201, res.status, "an escaped backslash is not a NUL: %s", res.body)
			res = api.do("POST", "/v1/tasks/1/cancel", `{"actor": "\u0000"}`)
			res.errorCode(t, 400, "invalid_request")
			res = api.do("GET", "/v1/tasks?name=%00", nil)
			res.errorCode(t, 400, "invalid_request")

			for _, p := range []string{"/v1/tasks/999999", "/v1/tasks/999999/explain", "/v1/tasks/999999/transitions"} {
				res = api.do("GET", p, nil)
				e = res.errorCode(t, 404, "not_found")
				require.Equal(t, map[string]any{"task_id": float64(999999)}, e["details"], p)
			}
			for _, p := range []string{"/v1/tasks/999999/handle", "/v1/tasks/999999/cancel", "/v1/tasks/999999/retry",
				"/v1/tasks/999999/steps/a/resolve"} {
				res = api.do("POST", p, nil)
				res.errorCode(t, 404, "not_found")
			}
			res = api.do("GET", "/v1/tasks/abc", nil)
			res.errorCode(t, 400, "invalid_request")
			res = api.do("GET", "/v1/tasks/0", nil)
			res.errorCode(t, 400, "invalid_request")

			res = api.do("DELETE", "/v1/tasks/1", nil)
			e = res.errorCode(t, 405, "method_not_allowed")
			require.Contains(t, res.header.Get("Allow"), "GET")
			require.Contains(t, e["details"].(map[string]any)["allow"], "GET")
			res = api.do("PUT", "/v1/tasks", nil)
			res.errorCode(t, 405, "method_not_allowed")
			require.Contains(t, res.header.Get("Allow"), "POST")
			res = api.do("GET", "/v1/tasks/1/handle", nil)
			res.errorCode(t, 405, "method_not_allowed")

			for _, p := range []string{"/v1/nothing", "/v2/tasks", "/", "/v1/tasks/", "/v1//tasks", "/v1/tasks/1/steps/a"} {
				res = api.do("GET", p, nil)
				res.errorCode(t, 404, "not_found")
			}
			res = api.do("HEAD", "/v1/info", nil)
			require.Equal(t, 200, res.status)
		})

		t.Run("body_limit", func(t *testing.T) {
			small := serve(t, c, httpapi.Options{MaxBodyBytes: 256})
			api := caller{t: t, base: small.URL}
			big := fmt.Sprintf(`{"namespace":"test","name":"chain","context":{"pad":%q}}`, strings.Repeat("x", 300))
			res := api.do("POST", "/v1/tasks", big)
			e := res.errorCode(t, 413, "payload_too_large")
			require.Equal(t, map[string]any{"limit_bytes": float64(256)}, e["details"])
			res = api.do("POST", "/v1/tasks", `{"namespace":"test","name":"chain"}`)
			require.Equal(t, 201, res.status, "a small body passes")

			// The default limit is 1 MiB.
			api = caller{t: t, base: srv.URL}
			huge := fmt.Sprintf(`{"namespace":"test","name":"chain","context":{"pad":%q}}`, strings.Repeat("x", 1<<20))
			res = api.do("POST", "/v1/tasks", huge)
			res.errorCode(t, 413, "payload_too_large")
		})
	})
}

func TestAuth(t *testing.T) {
	t.Parallel()
	c := openClient(t, "sqlite:"+testdb.SQLitePath(t))
	srv := serve(t, c, httpapi.Options{Token: "s3cret-token"})

	anon := caller{t: t, base: srv.URL}
	res := anon.do("GET", "/v1/info", nil)
	e := res.errorCode(t, 401, "unauthorized")
	require.Contains(t, e["message"], "missing")
	require.Equal(t, `Bearer realm="tasker"`, res.header.Get("WWW-Authenticate"))
	res = anon.do("POST", "/v1/tasks", `{"name":"chain","namespace":"test"}`)
	res.errorCode(t, 401, "unauthorized")
	res = anon.do("GET", "/v1/no-such-route", nil)
	res.errorCode(t, 401, "unauthorized")

	wrong := caller{t: t, base: srv.URL, token: "s3cret-tokeN"}
	res = wrong.do("GET", "/v1/info", nil)
	e = res.errorCode(t, 401, "unauthorized")
	require.Contains(t, e["message"], "invalid")
	require.Contains(t, res.header.Get("WWW-Authenticate"), `error="invalid_token"`)
	res = caller{t: t, base: srv.URL, token: "s3cret-token-longer"}.do("GET", "/v1/info", nil)
	res.errorCode(t, 401, "unauthorized")

	req, _ := http.NewRequest("GET", srv.URL+"/v1/info", nil)
	req.Header.Set("Authorization", "Basic czNjcmV0LXRva2Vu")
	hres, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	hres.Body.Close()
	require.Equal(t, 401, hres.StatusCode)

	right := caller{t: t, base: srv.URL, token: "s3cret-token"}
	res = right.do("GET", "/v1/info", nil)
	require.Equal(t, 200, res.status)
	d, res := right.create(map[string]any{"namespace": "test", "name": "chain"})
	require.Equal(t, 201, res.status)
	require.Equal(t, tasker.TaskState("complete"), right.handleUntilDone(d.Task.ID).Status)

	// Health stays open.
	require.Equal(t, 200, anon.do("GET", "/health/live", nil).status)
	require.Equal(t, 200, anon.do("GET", "/health/ready", nil).status)
	// Unknown routes outside /v1 are plain 404s.
	anon.do("GET", "/metrics", nil).errorCode(t, 404, "not_found")
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	c := openClient(t, "sqlite:"+testdb.SQLitePath(t))
	srv := serve(t, c, httpapi.Options{})
	get := func(id string) string {
		req, _ := http.NewRequest("GET", srv.URL+"/health/live", nil)
		if id != "" {
			req.Header.Set(httpapi.RequestIDHeader, id)
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res.Header.Get(httpapi.RequestIDHeader)
	}
	require.Equal(t, "abc-123.x", get("abc-123.x"))
	generated := get("")
	require.Len(t, generated, 24)
	require.NotEqual(t, generated, get(""))
	require.NotEqual(t, "bad id", get("bad id"))
	require.Len(t, get(strings.Repeat("a", 129)), 24)
}

func TestDatabaseDown(t *testing.T) {
	t.Parallel()
	path := testdb.SQLitePath(t)
	c := openClient(t, "sqlite:"+path)
	logs := &syncBuffer{}
	srv := serve(t, c, httpapi.Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
	api := caller{t: t, base: srv.URL}
	require.Equal(t, 200, api.do("GET", "/health/ready", nil).status)
	require.NoError(t, c.Close())

	res := api.do("GET", "/health/ready", nil)
	require.Equal(t, 503, res.status)
	m := res.doc(t)
	require.Equal(t, "unavailable", m["status"])
	require.Equal(t, "unavailable", m["error"].(map[string]any)["code"])
	require.Equal(t, 200, api.do("GET", "/health/live", nil).status)

	res = api.do("GET", "/v1/tasks", nil)
	e := res.errorCode(t, 500, "internal")
	rid := res.header.Get(httpapi.RequestIDHeader)
	require.Contains(t, e["message"], rid)
	require.NotContains(t, string(res.body), path)
	require.NotContains(t, string(res.body), "sql")
	require.Contains(t, logs.String(), "request_id="+rid, "the real error is logged under the request id")
}

func TestRequireToken(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"127.0.0.1:8080":          false,
		"127.0.0.1":               false,
		"127.1.2.3:9000":          false,
		"[::1]:8080":              false,
		"::1":                     false,
		"[::1]":                   false,
		"localhost:8080":          false,
		"localhost":               false,
		"LOCALHOST:1":             false,
		"localhost.:1":            false,
		"[::ffff:127.0.0.1]:80":   false,
		":8080":                   true,
		"":                        true,
		"0.0.0.0:8080":            true,
		"[::]:8080":               true,
		"10.0.0.5:8080":           true,
		"192.168.1.1":             true,
		"example.com:443":         true,
		"localhost.example.com:1": true,
		"128.0.0.1:80":            true,
		"[fe80::1%lo0]:80":        true,
	} {
		require.Equal(t, want, httpapi.RequireToken(addr), "RequireToken(%q)", addr)
	}
}
