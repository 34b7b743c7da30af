package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/httpapi"
	"github.com/tasker-systems/tasker/internal/testdb"
)

const flowTemplate = `name: billing
namespace_name: flow
version: 1.0.0
concurrency: {key: "acct-${context.account_id}", limit: 2, policy: cancel_newest}
rate_limits:
  stripe: {per_second: 25, burst: 5}
schedules:
  - {name: nightly, cron: "0 3 * * *", time_zone: Europe/Paris, context: {account_id: 7}, missed: catch_up, enabled: false}
step_templates:
  - name: list
    handler_class: tasker:noop
  - name: charge
    handler_class: tasker:noop
    depends_on_steps: [list]
    rate_limit: stripe
    fan_out: {over: list, path: items}
  - name: notify
    handler_class: tasker:noop
    depends_on_steps: [charge]
    when: "context.account_id > 0"
`

// TestTemplateFlowControl: GET /v1/templates/{ns}/{name} shows a template's
// flow control (concurrency key, rate limits, schedules, and the steps'
// condition, fan-out and rate limit) as the Go API's Template does.
func TestTemplateFlowControl(t *testing.T) {
	c, err := tasker.Open(context.Background(), tasker.Config{DatabaseURL: "sqlite:" + testdb.SQLitePath(t), AutoMigrate: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	tpl, err := c.AddTemplate("billing.yml", []byte(flowTemplate))
	require.NoError(t, err)
	require.Equal(t, &tasker.TemplateConcurrency{Key: "acct-${context.account_id}", Limit: 2, Policy: "cancel_newest"},
		tpl.Concurrency)
	require.Equal(t, map[string]*tasker.TemplateRateLimit{"stripe": {PerSecond: 25, Burst: 5}}, tpl.RateLimits)
	require.Len(t, tpl.Schedules, 1)
	require.Equal(t, "catch_up", tpl.Schedules[0].Missed)
	require.Equal(t, &tasker.StepFanOut{Over: "list", Path: "items", MaxItems: 1000}, tpl.Step("charge").FanOut)

	srv := serve(t, c, httpapi.Options{})
	api := caller{t: t, base: srv.URL}
	res := api.do("GET", "/v1/templates/flow/billing", nil)
	require.Equal(t, 200, res.status, "body %s", res.body)
	tm := res.doc(t)["template"].(map[string]any)
	require.Equal(t, map[string]any{"key": "acct-${context.account_id}", "limit": float64(2), "policy": "cancel_newest"},
		tm["concurrency"])
	require.Equal(t, map[string]any{"stripe": map[string]any{"per_second": float64(25), "burst": float64(5)}},
		tm["rate_limits"])
	require.Equal(t, []any{map[string]any{"name": "nightly", "cron": "0 3 * * *", "time_zone": "Europe/Paris",
		"context": map[string]any{"account_id": float64(7)}, "missed": "catch_up", "enabled": false}}, tm["schedules"])
	steps := tm["steps"].([]any)
	require.Len(t, steps, 3)
	require.NotContains(t, steps[0], "fan_out")
	charge := steps[1].(map[string]any)
	require.Equal(t, "stripe", charge["rate_limit"])
	require.Equal(t, map[string]any{"over": "list", "path": "items", "max_items": float64(1000)}, charge["fan_out"])
	require.Equal(t, "context.account_id > 0", steps[2].(map[string]any)["when"])
}

// TestExplainRPC: the RPC method "explain" (the Ruby gem's
// TaskerCore.client.explain) answers GET /v1/tasks/{id}/explain's document;
// here a delayed task's steps wait for its run_at.
func TestExplainRPC(t *testing.T) {
	c, err := tasker.Open(context.Background(), tasker.Config{DatabaseURL: "sqlite:" + testdb.SQLitePath(t), AutoMigrate: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = c.AddTemplate("billing.yml", []byte(flowTemplate))
	require.NoError(t, err)
	task, _, err := c.InitializeTask(context.Background(), &tasker.TaskRequest{Namespace: "flow", Name: "billing",
		Context: json.RawMessage(`{"account_id": 7}`), DelaySeconds: 3600})
	require.NoError(t, err)

	doc := dispatch(t, httpapi.NewDispatcher(c, "test"), "explain", map[string]any{"task_id": task.ID})
	require.Equal(t, float64(task.ID), doc["task_id"])
	require.Equal(t, "pending", doc["status"])
	steps := doc["steps"].([]any)
	require.Len(t, steps, 3)
	for _, s := range steps {
		st := s.(map[string]any)
		require.Contains(t, st["reason"], "task is delayed until", "step %v", st["name"])
		require.Equal(t, false, st["ready"])
	}

	srv := serve(t, c, httpapi.Options{})
	res := caller{t: t, base: srv.URL}.do("GET", fmt.Sprintf("/v1/tasks/%d/explain", task.ID), nil)
	require.Equal(t, 200, res.status)
	require.Equal(t, doc, res.doc(t))

	_, err = httpapi.NewDispatcher(c, "test").Call(context.Background(), "explain", []byte(`{}`))
	require.Error(t, err, "explain without a task_id is refused")
}
