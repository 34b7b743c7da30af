package tasker_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/httpapi"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/internal/testlog"
)

const secret = "s3cr3t-Pa55word"

// Database passwords never appear in errors or logs: not when the URL is
// malformed, not when the server cannot be reached at Open, and not in the
// runner's warnings while the database stays unreachable.
func TestNoDatabasePasswordInErrorsOrLogs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, url := range []string{
		"postgres://tasker:" + secret + "@127.0.0.1:1/tasker?connect_timeout=2",
		"postgresql://tasker:" + secret + "@127.0.0.1:notaport/tasker",
		"postgres://tasker:" + secret + "@127.0.0.1:1/tasker?sslmode=bogus",
		"mysql://tasker:" + secret + "@127.0.0.1/tasker",
		"postgres://tasker:" + secret + "@[::1/tasker",
	} {
		_, err := tasker.Open(ctx, tasker.Config{DatabaseURL: url, AutoMigrate: true, TemplatesDir: t.TempDir()})
		require.Error(t, err, url)
		require.NotContains(t, err.Error(), secret, "password leaked: %v", err)
	}

	logs := &testlog.Buffer{}
	c, err := tasker.Open(ctx, tasker.Config{DatabaseURL: "postgres://tasker:" + secret + "@127.0.0.1:1/tasker?connect_timeout=1",
		TemplatesDir: t.TempDir(), PollInterval: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	if err != nil { // the pool may connect eagerly in a future pgx: then the error above covers it
		require.NotContains(t, err.Error(), secret)
		return
	}
	defer c.Close()
	rctx, stop := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer stop()
	require.NoError(t, c.Run(rctx, 1))
	require.Contains(t, logs.String(), "claim queue", "the runner reported the failing database")
	require.NotContains(t, logs.String(), secret)
}

// The API token is never logged, whether it was right or wrong.
func TestNoTokenInLogs(t *testing.T) {
	t.Parallel()
	c := openClient(t, "sqlite:"+testdb.SQLitePath(t))
	logs := &testlog.Buffer{}
	srv := httptest.NewServer(httpapi.New(c, httpapi.Options{Token: secret,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}))
	defer srv.Close()
	for _, tok := range []string{secret, secret + "x", ""} {
		req, err := http.NewRequest("GET", srv.URL+"/v1/tasks", nil)
		require.NoError(t, err)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = res.Body.Close()
		if tok == secret {
			require.Equal(t, 200, res.StatusCode)
		} else {
			require.Equal(t, 401, res.StatusCode)
		}
	}
	require.NotEmpty(t, logs.String())
	require.False(t, strings.Contains(logs.String(), secret), "token leaked into logs")
}

// The built-in command handler is off unless enabled: a template using it
// fails its step permanently instead of running a program.
func TestCommandHandlerOffByDefault(t *testing.T) {
	t.Parallel()
	c := openClient(t, "sqlite:"+testdb.SQLitePath(t))
	_, err := c.AddTemplate("cmd.yml", []byte("name: cmd\nnamespace_name: sec\nstep_templates:\n"+
		"  - {name: run, handler_class: \"tasker:command\", handler_config: {command: /bin/touch, args: [/tmp/tasker-should-not-exist]}}\n"))
	require.NoError(t, err)
	ctx := context.Background()
	task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "sec", Name: "cmd"})
	require.NoError(t, err)
	res, err := c.RunTask(ctx, task.ID)
	require.NoError(t, err)
	require.Equal(t, tasker.TaskState("error"), res.Status)
	d, err := c.Task(ctx, task.ID)
	require.NoError(t, err)
	require.Contains(t, string(d.Steps[0].Error), "disabled")
	require.Equal(t, 1, d.Steps[0].Attempts, "refused permanently, not retried")
}

// Config.HTTPAllowedHosts limits where tasker:http steps may go: a host not
// on the list is refused without a request, for good.
func TestHTTPAllowedHostsFromConfig(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	ctx := context.Background()
	for _, tc := range []struct {
		allowed []string
		want    tasker.TaskState
	}{
		{[]string{"api.example.com"}, "error"},
		{[]string{"127.0.0.1"}, "complete"},
	} {
		c, err := tasker.Open(ctx, tasker.Config{DatabaseURL: "sqlite:" + testdb.SQLitePath(t), TemplatesDir: t.TempDir(),
			HTTPAllowedHosts: tc.allowed})
		require.NoError(t, err)
		_, err = c.AddTemplate("http.yml", []byte("name: call\nnamespace_name: sec\nstep_templates:\n"+
			"  - {name: get, handler_class: \"tasker:http\", default_retryable: false, handler_config: {url: \""+srv.URL+"/x\"}}\n"))
		require.NoError(t, err)
		task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "sec", Name: "call"})
		require.NoError(t, err)
		before := hits.Load()
		res, err := c.RunTask(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, tc.want, res.Status, "allowed %v", tc.allowed)
		if tc.want == "error" {
			require.Equal(t, before, hits.Load(), "a refused host gets no request")
		}
		require.NoError(t, c.Close())
	}
}
