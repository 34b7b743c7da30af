package ui

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/taskertype"
)

// TestVendoredDagre checks the vendored layout library is the file its
// README names.
func TestVendoredDagre(t *testing.T) {
	b, err := os.ReadFile("static/vendor/dagre/dagre.min.js")
	require.NoError(t, err)
	sum := sha256.Sum256(b)
	require.Equal(t, "54a503e346f93ca0bb10abe7999587e037262935687aca45eb4e4b0f64bbb578", hex.EncodeToString(sum[:]))
	readme, err := os.ReadFile("static/vendor/dagre/README.md")
	require.NoError(t, err)
	require.Contains(t, string(readme), hex.EncodeToString(sum[:]))
	for _, f := range []string{"LICENSE", "LICENSE.graphlib"} {
		_, err := os.Stat("static/vendor/dagre/" + f)
		require.NoError(t, err)
	}
}

// TestPages renders every page on both databases, checks the failed
// task's step panel, then retries the step through a confirmed form and
// sees the task complete with the actor recorded.
func TestPages(t *testing.T) {
	testdb.EachBackend(t, func(t *testing.T, dbURL string) {
		e := newEnv(t, envConfig{dbURL: dbURL, run: true})
		ok := e.create(t, "shop", "order_fulfillment", `{"order_id": 7}`, func(r *tasker.TaskRequest) {
			r.Tags = []string{"vip"}
			r.IdempotencyKey = "order-7"
		})
		bad := e.create(t, "test", "fails_once", `{}`)
		e.waitTask(t, ok, taskertype.TaskStateComplete)
		e.waitTask(t, bad, taskertype.TaskStateError)
		hc := client(t)

		code, body, hdr := get(t, hc, e.url+"/ui/")
		require.Equal(t, http.StatusOK, code, body)
		require.Contains(t, hdr.Get("Content-Security-Policy"), "script-src 'self'")
		require.Contains(t, body, `id="total-tasks">2<`)
		require.Regexp(t, `/ui/tasks\?state=error">error</a></td>\s*<td class="r">1<`, body)
		require.Contains(t, body, `id="failed-hour">1<`)

		code, body, _ = get(t, hc, e.url+"/ui/overview/fragment")
		require.Equal(t, http.StatusOK, code, body)
		require.Contains(t, body, "Tasks by state")

		// The list and its filters.
		code, body, _ = get(t, hc, e.url+"/ui/tasks")
		require.Equal(t, http.StatusOK, code, body)
		require.Contains(t, body, fmt.Sprintf(`href="/ui/tasks/%d"`, ok))
		require.Contains(t, body, fmt.Sprintf(`href="/ui/tasks/%d"`, bad))
		for _, q := range []string{"state=error", "namespace=test", "name=fails_once", "version=1.0.0&namespace=test"} {
			_, body, _ = get(t, hc, e.url+"/ui/tasks?"+q)
			require.Contains(t, body, fmt.Sprintf(`href="/ui/tasks/%d"`, bad), q)
			require.NotContains(t, body, fmt.Sprintf(`href="/ui/tasks/%d"`, ok), q)
		}
		_, body, _ = get(t, hc, e.url+"/ui/tasks?tag=vip")
		require.Contains(t, body, fmt.Sprintf(`href="/ui/tasks/%d"`, ok))
		require.NotContains(t, body, fmt.Sprintf(`href="/ui/tasks/%d"`, bad))
		_, body, _ = get(t, hc, e.url+"/ui/tasks?from=2000-01-01T00:00&to=2001-01-01T00:00")
		require.Contains(t, body, "No tasks match")
		code, body, _ = get(t, hc, e.url+"/ui/tasks?state=bogus")
		require.Equal(t, http.StatusBadRequest, code, body)
		// Keyset pages of one task each.
		_, body, _ = get(t, hc, e.url+"/ui/tasks?limit=1")
		require.Contains(t, body, "task-list")
		// Search by id and by idempotency key.
		code, _, hdr = get(t, hc, e.url+"/ui/tasks?q=order-7")
		require.Equal(t, http.StatusSeeOther, code)
		require.Equal(t, fmt.Sprintf("/ui/tasks/%d", ok), hdr.Get("Location"))
		code, _, hdr = get(t, hc, e.url+fmt.Sprintf("/ui/tasks?q=%d", bad))
		require.Equal(t, http.StatusSeeOther, code)
		require.Equal(t, fmt.Sprintf("/ui/tasks/%d", bad), hdr.Get("Location"))
		_, body, _ = get(t, hc, e.url+"/ui/tasks?q=nope")
		require.Contains(t, body, "No task has the id or idempotency key")

		// The failed task: graph data, the failed step, its panel.
		code, body, _ = get(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d", bad))
		require.Equal(t, http.StatusOK, code, body)
		require.Contains(t, body, `id="task-status" class="state big state-error"`)
		require.Contains(t, body, `data-graph="`)
		// Retention: a failed task is kept 30 days (the default) after it failed.
		require.Regexp(t, `id="task-kept">kept until \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ<`, body)
		code, body, _ = get(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d?step=charge", bad))
		require.Equal(t, http.StatusOK, code, body)
		require.Contains(t, body, "card declined: the payment gateway answered 402")
		require.Contains(t, body, `id="step-explain"`)
		require.Contains(t, body, `id="action-retry-step"`)

		var live liveDoc
		code, body, _ = get(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d/live?graph=1", bad))
		require.Equal(t, http.StatusOK, code, body)
		require.NoError(t, json.Unmarshal([]byte(body), &live))
		require.Equal(t, "error", live.Status)
		require.Equal(t, "ccepp", live.States)

		var frags map[string]string
		_, body, _ = get(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d/fragments?step=charge", bad))
		require.NoError(t, json.Unmarshal([]byte(body), &frags))
		require.Contains(t, frags["panel"], "card declined")
		require.Contains(t, frags["head"], "state-error")

		// Confirm, then retry with the CSRF token.
		code, body, _ = get(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d/confirm?action=retry&step=charge", bad))
		require.Equal(t, http.StatusOK, code, body)
		token := csrfOf(t, body)
		form := url.Values{"action": {"retry"}, "step": {"charge"}, "who": {"alice"}, "reason": {"card fixed"}}
		code, body, _ = post(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d/actions", bad), form)
		require.Equal(t, http.StatusForbidden, code, "a POST without the CSRF token: %s", body)
		form.Set("csrf", token)
		code, body, _ = post(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d/actions", bad), form, "Origin", "https://evil.example")
		require.Equal(t, http.StatusForbidden, code, "a cross-origin POST: %s", body)
		code, body, hdr = post(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d/actions", bad), form)
		require.Equal(t, http.StatusSeeOther, code, body)
		require.Contains(t, hdr.Get("Location"), "done=retry")
		e.waitTask(t, bad, taskertype.TaskStateComplete)
		_, steps, err := e.c.Transitions(context.Background(), bad)
		require.NoError(t, err)
		found := false
		for _, tr := range steps {
			if tr.Event == "retry" {
				require.Equal(t, "ui:alice", tr.Actor)
				require.Equal(t, "card fixed", tr.Reason)
				found = true
			}
		}
		require.True(t, found, "the retry transition is recorded")
		// A second retry is refused: the step is complete.
		code, body, _ = post(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d/actions", bad), form)
		require.Equal(t, http.StatusConflict, code, body)

		// Templates.
		code, body, _ = get(t, hc, e.url+"/ui/templates")
		require.Equal(t, http.StatusOK, code, body)
		require.Contains(t, body, "/ui/templates/shop/order_fulfillment/1.0.0")
		code, body, _ = get(t, hc, e.url+"/ui/templates/shop/order_fulfillment/1.0.0")
		require.Equal(t, http.StatusOK, code, body)
		require.Contains(t, body, `id="template-schema"`)
		require.Contains(t, body, "order_id")
		code, _, _ = get(t, hc, e.url+"/ui/templates/shop/nope/1.0.0")
		require.Equal(t, http.StatusNotFound, code)

		// Static assets, unknown pages, the API beside the dashboard.
		code, body, _ = get(t, hc, e.url+"/ui/static/vendor/dagre/dagre.min.js")
		require.Equal(t, http.StatusOK, code)
		require.True(t, strings.HasPrefix(body, `"use strict";var dagre=`))
		code, _, _ = get(t, hc, e.url+"/ui/nope")
		require.Equal(t, http.StatusNotFound, code)
		code, _, _ = get(t, hc, e.url+"/ui/tasks/999999")
		require.Equal(t, http.StatusNotFound, code)
		code, _, _ = get(t, hc, e.url+"/v1/info")
		require.Equal(t, http.StatusOK, code)
	})
}

// TestCancelAndResolve drives the other actions through their forms.
func TestCancelAndResolve(t *testing.T) {
	e := newEnv(t, envConfig{})
	hc := client(t)
	id := e.create(t, "shop", "order_fulfillment", `{"order_id": 1}`)
	_, body, _ := get(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d/confirm?action=cancel", id))
	token := csrfOf(t, body)
	form := url.Values{"csrf": {token}, "action": {"cancel"}}
	code, body, _ := post(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d/actions", id), form,
		"Origin", "https://tasker.example", "Sec-Fetch-Site", "cross-site")
	require.Equal(t, http.StatusForbidden, code, body)
	code, body, _ = post(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d/actions", id), form, "Origin", "null")
	require.Equal(t, http.StatusForbidden, code, body)
	// Behind a reverse proxy the Origin is the public host.
	code, body, _ = post(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d/actions", id), form,
		"Origin", "https://tasker.example", "X-Forwarded-Host", "tasker.example", "Sec-Fetch-Site", "same-origin")
	require.Equal(t, http.StatusSeeOther, code, body)
	e.waitTask(t, id, taskertype.TaskStateCancelled)

	id = e.create(t, "shop", "order_fulfillment", `{"order_id": 2}`)
	code, body, _ = post(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d/actions", id),
		url.Values{"csrf": {token}, "action": {"resolve_step"}, "step": {"validate_order"}})
	require.Equal(t, http.StatusSeeOther, code, body)
	code, body, _ = post(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d/actions", id), url.Values{"csrf": {token}, "action": {"resolve_task"}})
	require.Equal(t, http.StatusSeeOther, code, body)
	e.waitTask(t, id, taskertype.TaskStateResolvedManually)
	tr, _, err := e.c.Transitions(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, "ui", tr[len(tr)-1].Actor, "no name: the actor is ui")
	code, body, _ = post(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d/actions", id), url.Values{"csrf": {token}, "action": {"explode"}})
	require.Equal(t, http.StatusBadRequest, code, body)
}

// TestReadOnly hides and refuses the actions.
func TestReadOnly(t *testing.T) {
	e := newEnv(t, envConfig{opts: Options{ReadOnly: true}})
	hc := client(t)
	id := e.create(t, "shop", "order_fulfillment", `{"order_id": 1}`)
	code, body, _ := get(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d", id))
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "read-only")
	require.NotContains(t, body, `id="action-cancel"`)
	code, _, _ = get(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d/confirm?action=cancel", id))
	require.Equal(t, http.StatusForbidden, code)
	// No form carries a CSRF token here: take the session's own.
	req, _ := http.NewRequest(http.MethodGet, e.url+"/ui/", nil)
	u, _ := url.Parse(e.url + "/ui/")
	for _, c := range hc.Jar.Cookies(u) {
		req.AddCookie(c)
	}
	token := e.ui.csrfToken(e.ui.readSession(req))
	require.NotEmpty(t, token)
	code, body, _ = post(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d/actions", id), url.Values{"csrf": {token}, "action": {"cancel"}})
	require.Equal(t, http.StatusForbidden, code, body)
}

// TestLogin: with a token every page needs a login (or the bearer
// header); the cookie is Secure, HttpOnly and SameSite=Strict; the login
// form has its own CSRF token; a wrong token is refused.
func TestLogin(t *testing.T) {
	const apiToken = "s3cret-token-for-the-dashboard"
	e := newEnv(t, envConfig{opts: Options{Token: apiToken}})
	id := e.create(t, "shop", "order_fulfillment", `{"order_id": 1}`)
	hc := client(t)

	code, _, hdr := get(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d?step=ship_order", id))
	require.Equal(t, http.StatusSeeOther, code)
	require.Equal(t, "/ui/login?next="+url.QueryEscape(fmt.Sprintf("/ui/tasks/%d?step=ship_order", id)), hdr.Get("Location"))
	code, _, _ = get(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d/live", id))
	require.Equal(t, http.StatusUnauthorized, code)

	code, body, hdr := get(t, hc, e.url+"/ui/login?next=/ui/tasks")
	require.Equal(t, http.StatusOK, code, body)
	cookie := hdr.Get("Set-Cookie")
	require.Contains(t, cookie, "HttpOnly")
	require.Contains(t, cookie, "Secure")
	require.Contains(t, cookie, "SameSite=Strict")
	require.Contains(t, cookie, "Path=/ui")
	token := csrfOf(t, body)

	code, _, _ = post(t, hc, e.url+"/ui/login", url.Values{"token": {apiToken}, "next": {"/ui/tasks"}})
	require.Equal(t, http.StatusForbidden, code, "login without CSRF token")
	code, body, _ = post(t, hc, e.url+"/ui/login", url.Values{"csrf": {token}, "token": {"wrong"}, "next": {"/ui/tasks"}})
	require.Equal(t, http.StatusUnauthorized, code)
	require.Contains(t, body, "not the API token")
	code, _, hdr = post(t, hc, e.url+"/ui/login", url.Values{"csrf": {token}, "token": {apiToken}, "who": {"bob"},
		"next": {"//evil.example/x"}})
	require.Equal(t, http.StatusSeeOther, code)
	require.Equal(t, "/ui/", hdr.Get("Location"), "an off-site next is ignored")

	code, body, _ = get(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d", id))
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, "Log out")
	require.Contains(t, body, ">bob<")
	// The session's CSRF token differs from the login page's.
	_, body, _ = get(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d/confirm?action=cancel", id))
	sessToken := csrfOf(t, body)
	require.NotEqual(t, token, sessToken)
	code, body, _ = post(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d/actions", id), url.Values{"csrf": {token}, "action": {"cancel"}})
	require.Equal(t, http.StatusForbidden, code, body)
	code, body, _ = post(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d/actions", id), url.Values{"csrf": {sessToken}, "action": {"cancel"}})
	require.Equal(t, http.StatusSeeOther, code, body)
	tr, _, err := e.c.Transitions(context.Background(), id)
	require.NoError(t, err)
	require.Equal(t, "ui:bob", tr[len(tr)-1].Actor)

	// A forged cookie is no session.
	forged := client(t)
	u, _ := url.Parse(e.url + "/ui/")
	forged.Jar.SetCookies(u, []*http.Cookie{{Name: SessionCookie, Value: "eyJzaWQiOiJ4IiwiYXV0aCI6dHJ1ZSwiZXhwIjo5OTk5OTk5OTk5fQ.AAAA", Path: "/ui"}})
	code, _, _ = get(t, forged, e.url+"/ui/")
	require.Equal(t, http.StatusSeeOther, code)

	// The bearer header works like the API's, without a session.
	req, _ := http.NewRequest(http.MethodGet, e.url+fmt.Sprintf("/ui/tasks/%d/live", id), nil)
	req.Header.Set("Authorization", "Bearer "+apiToken)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)

	// Log out.
	_, body, _ = get(t, hc, e.url+"/ui/")
	code, _, _ = post(t, hc, e.url+"/ui/logout", url.Values{"csrf": {csrfOf(t, body)}})
	require.Equal(t, http.StatusSeeOther, code)
	code, _, _ = get(t, hc, e.url+"/ui/")
	require.Equal(t, http.StatusSeeOther, code)
}

// TestBigTaskPage: a task above the graph limit gets counts and a paged
// step table instead of the graph.
func TestBigTaskPage(t *testing.T) {
	e := newEnv(t, envConfig{opts: Options{GraphLimit: 3}})
	id := e.create(t, "shop", "order_fulfillment", `{"order_id": 1}`)
	hc := client(t)
	_, body, _ := get(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d", id))
	require.Contains(t, body, `id="dag-summary"`)
	require.NotContains(t, body, `data-graph=`)
	require.Contains(t, body, `id="step-table"`)
	_, body, _ = get(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d/live?graph=1", id))
	require.NotContains(t, body, `"states"`)
	_, body, _ = get(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d?state=pending&page=9", id))
	require.Contains(t, body, "notify_customer")
}

// TestPostgresConfig: the dashboard's pool reads tasker's pgbouncer
// parameter like the engine's store.
func TestPostgresConfig(t *testing.T) {
	cfg, err := postgresConfig("postgres://u@localhost/db?pgbouncer=true")
	require.NoError(t, err)
	require.NotContains(t, cfg.RuntimeParams, "pgbouncer")
	require.NotContains(t, cfg.RuntimeParams, "jit")
	require.Equal(t, pgx.QueryExecModeCacheDescribe, cfg.DefaultQueryExecMode)
	cfg, err = postgresConfig("postgres://u@localhost/db")
	require.NoError(t, err)
	require.Equal(t, "off", cfg.RuntimeParams["jit"])
	require.Equal(t, pgx.QueryExecModeCacheStatement, cfg.DefaultQueryExecMode)
	cfg, err = postgresConfig("postgres://u@localhost/db?pgbouncer=true&listen_host=db.internal&listen_port=5432")
	require.NoError(t, err)
	require.NotContains(t, cfg.RuntimeParams, "listen_host", "tasker's parameters are not startup parameters")
	require.NotContains(t, cfg.RuntimeParams, "listen_port")
	_, err = postgresConfig("postgres://u@localhost/db?pgbouncer=maybe")
	require.ErrorContains(t, err, "pgbouncer")
	_, err = postgresConfig("postgres://u:secret@localhost:notaport/db")
	require.Error(t, err)
	require.NotContains(t, err.Error(), "secret")
}

// TestBacktrace: an external worker's error (a Ruby exception with its
// class and backtrace) shows in the step panel.
func TestBacktrace(t *testing.T) {
	e := newEnv(t, envConfig{})
	id := e.create(t, "shop", "order_fulfillment", `{"order_id": 9}`)
	ctx := context.Background()
	claim, err := e.c.Worker().ClaimSteps(ctx, tasker.ClaimParams{TaskID: id, Owner: "rails-worker-1", Limit: 1})
	require.NoError(t, err)
	require.Len(t, claim.Steps, 1)
	st := claim.Steps[0]
	_, err = e.c.Worker().ReportAndFinalize(ctx, tasker.ReportParams{TaskID: id, Owner: "rails-worker-1", Results: []tasker.ExternalResult{{StepID: st.StepID, Attempt: st.Attempt,
		Error: &tasker.ExternalError{Message: "undefined method `total' for nil", Class: "NoMethodError", Permanent: true,
			Backtrace: []string{"app/handlers/validate_order.rb:12:in `call'", "lib/tasker_core/step_handler.rb:40:in `run'"}}}}})
	require.NoError(t, err)
	hc := client(t)
	code, body, _ := get(t, hc, e.url+fmt.Sprintf("/ui/tasks/%d?step=%s", id, st.Name))
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `id="step-error"`)
	require.Contains(t, body, "NoMethodError")
	require.Contains(t, body, "undefined method `total&#39; for nil")
	require.Contains(t, body, "app/handlers/validate_order.rb:12:in `call&#39;\nlib/tasker_core/step_handler.rb:40:in `run&#39;")
	require.Contains(t, body, "rails-worker-1")
}
