package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
)

const noopTemplate = `name: noop
namespace_name: libtest
version: 1.0.0
step_templates:
  - {name: s1, handler_class: Test::Noop}
`

// openTest opens an engine on a fresh SQLite database and closes it at the
// end of the test.
func openTest(t *testing.T, cfg openConfig) (uint64, *instance) {
	t.Helper()
	dir := t.TempDir()
	if cfg.TemplatesDir == "" {
		cfg.TemplatesDir = filepath.Join(dir, "templates")
		require.NoError(t, os.MkdirAll(cfg.TemplatesDir, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(cfg.TemplatesDir, "noop.yaml"), []byte(noopTemplate), 0o644))
	}
	cfg.DatabaseURL = "sqlite:" + filepath.Join(dir, "tasker.db")
	id, err := open(&cfg)
	require.NoError(t, err)
	mu.Lock()
	in := instances[id]
	mu.Unlock()
	t.Cleanup(func() {
		mu.Lock()
		delete(instances, id)
		mu.Unlock()
		_ = closeInstance(in)
	})
	return id, in
}

func call(t *testing.T, in *instance, method string, params any) map[string]any {
	t.Helper()
	body, err := json.Marshal(params)
	require.NoError(t, err)
	res, err := in.dispatch.Call(context.Background(), method, body)
	require.NoError(t, err, method)
	raw, err := json.Marshal(res)
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(raw, &doc))
	return doc
}

// answerOf is the decoded document tasker_call would return.
func answerOf(t *testing.T, res any, err error) map[string]any {
	t.Helper()
	var doc map[string]any
	require.NoError(t, json.Unmarshal(encodeAnswer(res, err), &doc))
	return doc
}

// A missing templates directory is a template problem, not a database
// error (its ENOENT looked like a network error to the classifier).
func TestOpenMissingTemplatesDirIsInvalidTemplate(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no", "such", "templates")
	_, err := open(&openConfig{DatabaseURL: "sqlite:" + filepath.Join(dir, "tasker.db"), TemplatesDir: missing})
	require.Error(t, err)
	doc := answerOf(t, nil, err)
	require.Equal(t, false, doc["ok"])
	e := doc["error"].(map[string]any)
	require.Equal(t, "invalid_template", e["code"], "%v", e)
	require.Contains(t, e["message"], missing)

	file := filepath.Join(dir, "file.yaml")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o644))
	_, err = open(&openConfig{DatabaseURL: "sqlite:" + filepath.Join(dir, "tasker2.db"), TemplatesDir: file})
	require.Equal(t, "invalid_template", answerOf(t, nil, err)["error"].(map[string]any)["code"])
}

func TestOpenRefusesAnUnknownLogSink(t *testing.T) {
	_, err := open(&openConfig{DatabaseURL: "sqlite:" + filepath.Join(t.TempDir(), "t.db"), LogSink: "syslog"})
	require.Equal(t, "invalid_request", answerOf(t, nil, err)["error"].(map[string]any)["code"])
}

// With the buffer sink, the core's records (here the rescuer's, at info)
// come back from logs_poll with their level, message and attributes, once.
func TestLogsPollReturnsTheCoresRecords(t *testing.T) {
	_, in := openTest(t, openConfig{LogSink: LogSinkBuffer, LogLevel: "info", StepLeaseMS: 100, RescueIntervalMS: -1})
	task := call(t, in, "initialize_task", map[string]any{"namespace": "libtest", "name": "noop"})["task"].(map[string]any)
	claim := call(t, in, "claim_steps", map[string]any{"task_id": task["task_id"], "owner": "gone"})
	require.Len(t, claim["steps"], 1)
	deadline := time.Now().Add(20 * time.Second)
	for call(t, in, "rescue", nil)["rescued"].(float64) == 0 {
		require.True(t, time.Now().Before(deadline), "the lease was never rescued")
		time.Sleep(20 * time.Millisecond)
	}
	res, err := in.pollLogs([]byte(`{}`))
	require.NoError(t, err)
	doc := answerOf(t, res, nil)["result"].(map[string]any)
	require.EqualValues(t, 0, doc["dropped"])
	var found map[string]any
	for _, r := range doc["records"].([]any) {
		rec := r.(map[string]any)
		if rec["msg"] == "rescued step with expired lease" {
			found = rec
		}
	}
	require.NotNil(t, found, "records: %v", doc["records"])
	require.Equal(t, "INFO", found["level"])
	attrs := found["attrs"].(map[string]any)
	require.Equal(t, task["task_id"], attrs["task_id"])
	require.Equal(t, "s1", attrs["step"])
	_, err = time.Parse(time.RFC3339Nano, found["time"].(string))
	require.NoError(t, err)

	again, err := in.pollLogs(nil)
	require.NoError(t, err)
	require.Empty(t, again.(logsDoc).Records, "a record came back twice")

	_, err = in.pollLogs([]byte(`{"bogus": 1}`))
	require.ErrorIs(t, err, tasker.ErrInvalidRequest)
}

// Without the buffer sink, logs_poll is refused (the records went to stderr).
func TestLogsPollNeedsTheBufferSink(t *testing.T) {
	_, in := openTest(t, openConfig{})
	_, err := in.pollLogs(nil)
	e := answerOf(t, nil, err)["error"].(map[string]any)
	require.Equal(t, "invalid_request", e["code"])
	require.Contains(t, e["message"], "log_sink")
}

// The buffer keeps the newest records and counts the dropped ones; groups
// and WithAttrs flatten into "group.key"; levels below the sink's are not
// kept; values JSON cannot hold become text.
func TestLogBufferBoundsAndFlattens(t *testing.T) {
	buf := newLogBuffer(3)
	log := slog.New(newBufferHandler(buf, slog.LevelInfo)).With("engine", "e1").WithGroup("req")
	log.Debug("hidden")
	for i := range 5 {
		log.Info("rec", "i", i, slog.Group("g", "k", "v"), "err", errors.New("boom"), "d", 1500*time.Millisecond)
	}
	recs, dropped := buf.take(2)
	require.EqualValues(t, 2, dropped)
	require.Len(t, recs, 2)
	require.Equal(t, map[string]any{"engine": "e1", "req.i": int64(2), "req.g.k": "v", "req.err": "boom", "req.d": "1.5s"},
		recs[0].Attrs)
	recs, dropped = buf.take(0)
	require.EqualValues(t, 0, dropped)
	require.Len(t, recs, 1)
	require.Equal(t, int64(4), recs[0].Attrs["req.i"])
	big := strings.Repeat("é", logTextMax)
	slog.New(newBufferHandler(buf, slog.LevelInfo)).Warn(big, "nan", 0.0/zero())
	recs, _ = buf.take(0)
	require.Equal(t, "WARN", recs[0].Level)
	require.LessOrEqual(t, len(recs[0].Msg), logTextMax+len("…(truncated)"))
	_, err := json.Marshal(recs)
	require.NoError(t, err)
}

func zero() float64 { return 0 }

// TestCreateTasks: tasker_create_tasks's Go side answers the batch
// endpoint's document, each request with its own outcome, and a whole-batch
// error for a body that is no batch.
func TestCreateTasks(t *testing.T) {
	_, in := openTest(t, openConfig{})
	raw := encodeAnswer(in.createTasks([]byte(`[{"namespace":"libtest","name":"noop","idempotency_key":"a"},
 {"namespace":"libtest","name":"ghost"}, {"namespace":"libtest","name":"noop","idempotency_key":"a"}]`), 0))
	var env struct {
		OK     bool `json:"ok"`
		Result struct {
			Created, Existing, Failed int
			Results                   []struct {
				Index  int            `json:"index"`
				Status string         `json:"status"`
				Task   map[string]any `json:"task"`
				Error  map[string]any `json:"error"`
			} `json:"results"`
		} `json:"result"`
	}
	require.NoError(t, json.Unmarshal(raw, &env), string(raw))
	require.True(t, env.OK, string(raw))
	require.Equal(t, 1, env.Result.Created)
	require.Equal(t, 1, env.Result.Existing)
	require.Equal(t, 1, env.Result.Failed)
	require.Equal(t, "created", env.Result.Results[0].Status)
	require.Equal(t, "error", env.Result.Results[1].Status)
	require.Equal(t, "not_found", env.Result.Results[1].Error["code"])
	require.Equal(t, "existing", env.Result.Results[2].Status)
	require.Equal(t, env.Result.Results[0].Task["task_id"], env.Result.Results[2].Task["task_id"])

	raw = encodeAnswer(in.createTasks([]byte(`{"tasks": 3}`), time.Second))
	var bad struct {
		OK    bool           `json:"ok"`
		Error map[string]any `json:"error"`
	}
	require.NoError(t, json.Unmarshal(raw, &bad))
	require.False(t, bad.OK)
	require.Equal(t, "invalid_request", bad.Error["code"])
}
