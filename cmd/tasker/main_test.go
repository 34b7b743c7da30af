package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/testdb"
)

// raceBuild is set by race_test.go when the tests run with -race, so that
// the binary is built the same way (reusing the build cache, and checking
// the command itself for races).
var raceBuild bool

// bin is the tasker binary built once for all tests.
var bin string

// examples is the absolute path of the repository's examples directory.
var examples string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "tasker-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "tasker")
	args := []string{"build", "-o", bin}
	if raceBuild {
		args = append(args, "-race")
	}
	cmd := exec.Command(goTool(), append(args, ".")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build tasker:", err)
		return 1
	}
	if examples, err = filepath.Abs(filepath.Join("..", "..", "examples")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// goTool finds the go command that runs these tests.
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			return p
		}
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// env is the environment of the subprocesses: no TASKER_* settings from the
// developer's shell, no colours, a known user.
func env(extra ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "TASKER_") || strings.HasPrefix(kv, "USER=") {
			continue
		}
		out = append(out, kv)
	}
	return append(append(out, "NO_COLOR=1", "USER=tester"), extra...)
}

type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// tasker runs the binary in dir and returns its exit code and output.
func tasker(t *testing.T, dir string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	default:
		t.Fatalf("run tasker %v: %v", args, err)
	}
	return res
}

// report mirrors the JSON report of `tasker run --json`.
type report struct {
	TaskID     int64  `json:"task_id"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	Version    string `json:"version"`
	Status     string `json:"status"`
	DurationMS int64  `json:"duration_ms"`
	Steps      []struct {
		Name        string          `json:"name"`
		Status      string          `json:"status"`
		Attempts    int             `json:"attempts"`
		MaxAttempts int             `json:"max_attempts"`
		Results     json.RawMessage `json:"results"`
		LastError   *string         `json:"last_error"`
		DurationMS  int64           `json:"duration_ms"`
	} `json:"steps"`
}

// decodeReport requires stdout to be exactly one JSON document.
func decodeReport(t *testing.T, res result) *report {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(res.stdout))
	dec.DisallowUnknownFields()
	var r report
	require.NoError(t, dec.Decode(&r), res.String())
	_, err := dec.Token()
	require.ErrorIs(t, err, io.EOF, "stdout holds more than one JSON document:\n%s", res)
	return &r
}

// writeFiles creates files (relative path -> content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
}

const failingTemplate = `name: flaky
namespace_name: test
version: 1.0.0
description: one step fails for good
step_templates:
  - name: first
    handler_class: tasker:noop
  - name: boom
    depends_on_step: first
    handler_class: tasker:fail
    handler_config: {always: true, permanent: true}
  - name: after
    depends_on_step: boom
    handler_class: tasker:noop
  - name: side
    depends_on_step: first
    handler_class: tasker:noop
`

func TestRunSuccessJSON(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	res := tasker(t, dir, "run", "demo/diamond", "--templates", filepath.Join(examples, "diamond"), "--json")
	require.Equal(t, 0, res.code, res.String())
	r := decodeReport(t, res)
	require.Equal(t, "complete", r.Status)
	require.Equal(t, "demo", r.Namespace)
	require.Equal(t, "diamond", r.Name)
	require.Equal(t, "1.0.0", r.Version)
	require.Positive(t, r.TaskID)
	require.Len(t, r.Steps, 4)
	for _, st := range r.Steps {
		require.Equal(t, "complete", st.Status, st.Name)
		require.Equal(t, 1, st.Attempts, st.Name)
		require.Equal(t, 3, st.MaxAttempts, st.Name)
		require.Nil(t, st.LastError, st.Name)
		require.NotEmpty(t, st.Results, st.Name)
	}
	require.GreaterOrEqual(t, r.Steps[1].DurationMS, int64(300), "b sleeps 300 ms")
	// With no --database-url the SQLite file tasker.db is made in the working directory.
	require.FileExists(t, filepath.Join(dir, "tasker.db"))
}

// The fan-out example runs one thumbnail step per image, three at a time,
// and publish receives their results in order.
func TestRunFanOutExample(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	res := tasker(t, dir, "run", "media/thumbnails", "--templates", filepath.Join(examples, "fanout"), "--json")
	require.Equal(t, 0, res.code, res.String())
	r := decodeReport(t, res)
	require.Equal(t, "complete", r.Status)
	require.Len(t, r.Steps, 11, "list_images, thumbnail, publish and 8 thumbnails")
	byName := map[string]json.RawMessage{}
	for _, st := range r.Steps {
		require.Equal(t, "complete", st.Status, st.Name)
		byName[st.Name] = st.Results
	}
	require.JSONEq(t, `{"slept_ms": 150}`, string(byName["thumbnail[7]"]))
	var collected []json.RawMessage
	require.NoError(t, json.Unmarshal(byName["thumbnail"], &collected))
	require.Len(t, collected, 8)
}

func TestRunPlainProgress(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	res := tasker(t, dir, "run", "analytics/data_pipeline", "--templates", filepath.Join(examples, "data_pipeline"),
		"--database-url", "sqlite:"+filepath.Join(dir, "p.db"))
	require.Equal(t, 0, res.code, res.String())
	for _, step := range []string{"extract_orders", "extract_customers", "extract_products", "transform", "load", "report"} {
		require.Contains(t, res.stdout, "step "+step+" started (attempt 1/3)", res.String())
		require.Contains(t, res.stdout, "step "+step+" complete in ", res.String())
	}
	lines := strings.Split(strings.TrimSpace(res.stdout), "\n")
	require.Regexp(t, `^task 1 analytics/data_pipeline@1\.0\.0 complete in .*: 6/6 steps done, 6 attempts$`, lines[len(lines)-1])
	require.NotContains(t, res.stdout, "\x1b[", "no terminal escapes when stdout is not a terminal")
	// The three extracts run in parallel: all start before the first completes.
	starts := 0
	for _, l := range lines {
		if strings.Contains(l, "complete in") {
			break
		}
		if strings.Contains(l, "started") {
			starts++
		}
	}
	require.Equal(t, 3, starts, res.stdout)
}

func TestRunRetryThenSuccess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ex := filepath.Join(examples, "order_fulfillment")
	start := time.Now()
	res := tasker(t, dir, "run", "shop/order_fulfillment", "--templates", ex,
		"--context", "@"+filepath.Join(ex, "context.json"), "--json", "--database-url", "sqlite:"+filepath.Join(dir, "o.db"))
	require.Equal(t, 0, res.code, res.String())
	require.Less(t, time.Since(start), 20*time.Second)
	r := decodeReport(t, res)
	require.Equal(t, "complete", r.Status)
	require.GreaterOrEqual(t, r.DurationMS, int64(1000), "the 1 s Retry-After is honoured")
	names := make([]string, len(r.Steps))
	for i, st := range r.Steps {
		names[i] = st.Name
		require.Equal(t, "complete", st.Status)
		if st.Name == "charge_payment" {
			require.Equal(t, 2, st.Attempts)
			require.GreaterOrEqual(t, st.DurationMS, int64(1000))
			require.JSONEq(t, `{"ok": true, "attempt": 2}`, string(st.Results))
		} else {
			require.Equal(t, 1, st.Attempts, st.Name)
		}
	}
	require.Equal(t, []string{"validate_order", "reserve_inventory", "charge_payment", "ship_order", "send_confirmation"}, names)
}

func TestRunPermanentFailure(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"tpl/flaky.yml": failingTemplate})
	res := tasker(t, dir, "run", "test/flaky", "--templates", "tpl", "--json")
	require.Equal(t, 1, res.code, res.String())
	r := decodeReport(t, res)
	require.Equal(t, "error", r.Status)
	byName := map[string]int{}
	for i, st := range r.Steps {
		byName[st.Name] = i
	}
	boom := r.Steps[byName["boom"]]
	require.Equal(t, "error", boom.Status)
	require.Equal(t, 1, boom.Attempts, "a permanent failure gets no retry")
	require.NotNil(t, boom.LastError)
	require.Contains(t, *boom.LastError, "planned failure")
	require.Equal(t, "pending", r.Steps[byName["after"]].Status)
	require.Equal(t, "complete", r.Steps[byName["side"]].Status)

	// Without --json: the summary names the failed step.
	res = tasker(t, dir, "run", "test/flaky", "--templates", "tpl")
	require.Equal(t, 1, res.code, res.String())
	require.Contains(t, res.stdout, "step boom failed (attempt 1/3): permanent: tasker:fail: planned failure")
	require.Contains(t, res.stdout, "error in")
	require.Contains(t, res.stdout, "failed: boom")
}

func TestRunBadInput(t *testing.T) {
	t.Parallel()
	ex := filepath.Join(examples, "order_fulfillment")
	ctxFile := "@" + filepath.Join(ex, "context.json")
	bad := t.TempDir()
	writeFiles(t, bad, map[string]string{
		"one.yml":       "name: one\nstep_templates:\n  - name: a\n    handler_class: tasker:noop\n    depends_on_step: missing\n",
		"sub/two.yaml":  "name: two\nversion: v1\nstep_templates:\n  - name: a\n    handler_clas: tasker:noop\n",
		"three.yml":     "name: three\nstep_templates:\n  - name: ok\n    handler_class: tasker:noop\n",
		"context.json":  "not yaml, ignored",
		"broken.json":   "{",
		"notobject.txt": "[1, 2]",
	})
	cases := []struct {
		name string
		args []string
		want []string // in stderr
	}{
		{"unknown template", []string{"run", "shop/nope", "--templates", ex},
			[]string{"shop/nope", "not found", "shop/order_fulfillment@1.0.0"}},
		{"unknown version", []string{"run", "shop/order_fulfillment@9.9.9", "--templates", ex},
			[]string{"shop/order_fulfillment@9.9.9", "available: shop/order_fulfillment@1.0.0"}},
		{"malformed context", []string{"run", "shop/order_fulfillment", "--templates", ex, "--context", `{"order_id": 1,`},
			[]string{"malformed --context"}},
		{"malformed context file", []string{"run", "shop/order_fulfillment", "--templates", ex, "--context", "@" + filepath.Join(bad, "broken.json")},
			[]string{"malformed --context file", "broken.json"}},
		{"context not an object", []string{"run", "shop/order_fulfillment", "--templates", ex, "--context", "@" + filepath.Join(bad, "notobject.txt")},
			[]string{"must be a JSON object"}},
		{"unreadable context file", []string{"run", "shop/order_fulfillment", "--templates", ex, "--context", "@no/such/file.json"},
			[]string{"cannot read --context file no/such/file.json"}},
		{"context violates schema", []string{"run", "shop/order_fulfillment", "--templates", ex, "--context", `{"order_id": "x"}`},
			[]string{"customer_email", "/order_id", "integer"}},
		{"missing context", []string{"run", "shop/order_fulfillment", "--templates", ex},
			[]string{"order_id", "customer_email"}},
		{"invalid template dir", []string{"run", "default/three", "--templates", bad},
			[]string{"one.yml:5", `unknown step "missing"`, "two.yaml:2", "version", "two.yaml:5", "handler_clas", "problems in templates under"}},
		{"missing template dir", []string{"run", "shop/order_fulfillment", "--templates", filepath.Join(bad, "nope"), "--context", ctxFile},
			[]string{"does not exist"}},
		{"bad template ref", []string{"run", "shop/", "--templates", ex}, []string{"NAMESPACE/NAME"}},
		{"no template", []string{"run", "--templates", ex}, []string{"usage: tasker run"}},
		{"unknown flag", []string{"run", "shop/order_fulfillment", "--templates", ex, "--frobnicate"}, []string{"unknown flag: --frobnicate"}},
		{"bad bypass", []string{"run", "shop/order_fulfillment", "--templates", ex, "--context", ctxFile, "--bypass", "ship_order"},
			[]string{"ship_order", "not skippable"}},
		{"bad database url", []string{"run", "shop/order_fulfillment", "--templates", ex, "--database-url", "mysql://x"},
			[]string{"--database-url must start with"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			res := tasker(t, dir, tc.args...)
			require.Equal(t, 2, res.code, res.String())
			require.Empty(t, res.stdout, res.String())
			for _, w := range tc.want {
				require.Contains(t, res.stderr, w, res.String())
			}
			lines := strings.Split(strings.TrimSpace(res.stderr), "\n")
			require.True(t, strings.HasPrefix(lines[len(lines)-1], "tasker: "), res.String())
			require.NoFileExists(t, filepath.Join(dir, "tasker.db"), "bad input must not create a database")
		})
	}
}

func TestTemplateCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"bad/a.yml":  "name: a\nstep_templates:\n  - name: x\n    handler_class: tasker:nop\n  - name: y\n    handler_class: tasker:noop\n    depends_on_steps: [x, z]\n",
		"bad/b.yaml": "name: b\nmax_parallel_steps: lots\nstep_templates: []\n",
		"bad/c.yml":  "name: c\nstep_templates:\n  - name: fine\n    handler_class: tasker:noop\n",
	})

	res := tasker(t, dir, "template", "validate", "bad")
	require.Equal(t, 2, res.code, res.String())
	require.Contains(t, res.stdout, "a.yml:7", res.String())
	require.Contains(t, res.stdout, `unknown step "z"`)
	require.Contains(t, res.stdout, "b.yaml:2")
	require.Contains(t, res.stdout, "max_parallel_steps")
	require.Contains(t, res.stderr, "in 2 files")
	require.Contains(t, res.stderr, "1 template OK")

	res = tasker(t, dir, "template", "validate", examples+"/order_fulfillment")
	require.Equal(t, 0, res.code, res.String())
	require.Equal(t, "1 template OK\n", res.stdout)

	res = tasker(t, dir, "template", "validate", examples)
	require.Equal(t, 0, res.code, res.String())
	// Every YAML file under examples/ is a template (cron, deadline, delayed, dedup,
	// conditional, fanout, retention, concurrency and ratelimit included).
	var yamls int
	require.NoError(t, filepath.WalkDir(examples, func(p string, _ fs.DirEntry, err error) error {
		if ext := filepath.Ext(p); ext == ".yaml" || ext == ".yml" {
			yamls++
		}
		return err
	}))
	require.GreaterOrEqual(t, yamls, 8)
	require.Equal(t, fmt.Sprintf("%d templates OK\n", yamls), res.stdout)

	res = tasker(t, dir, "template", "list", "--templates", examples)
	require.Equal(t, 0, res.code, res.String())
	require.Regexp(t, `analytics/data_pipeline@1\.0\.0\s+6\s+Extract three`, res.stdout)
	require.Regexp(t, `demo/diamond@1\.0\.0\s+4\s`, res.stdout)
	require.Regexp(t, `shop/order_fulfillment@1\.0\.0\s+5\s+Validate`, res.stdout)
	require.Regexp(t, `reports/nightly_report@1\.0\.0\s+2\s+Build`, res.stdout)

	res = tasker(t, dir, "template", "graph", "demo/diamond", "--templates", examples)
	require.Equal(t, 0, res.code, res.String())
	require.True(t, strings.HasPrefix(res.stdout, "graph TD\n"), res.stdout)
	for _, edge := range []string{"s0 --> s1", "s0 --> s2", "s1 --> s3", "s2 --> s3"} {
		require.Contains(t, res.stdout, edge)
	}

	res = tasker(t, dir, "template", "graph", "analytics/data_pipeline@1.0.0", "--templates", examples, "--format", "dot")
	require.Equal(t, 0, res.code, res.String())
	require.Contains(t, res.stdout, `"extract_orders" -> "transform";`)
	require.Contains(t, res.stdout, `"load" -> "report";`)

	res = tasker(t, dir, "template", "graph", "demo/diamond", "--templates", examples, "--format", "png")
	require.Equal(t, 2, res.code, res.String())
	res = tasker(t, dir, "template", "graph", "demo/square", "--templates", examples)
	require.Equal(t, 2, res.code, res.String())
	require.Contains(t, res.stderr, "demo/diamond@1.0.0")
	require.NoFileExists(t, filepath.Join(dir, "tasker.db"), "template commands need no database")
}

func TestTaskCommands(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"tpl/flaky.yml": failingTemplate})
	db := []string{"--database-url", "sqlite:" + filepath.Join(dir, "ops.db")}
	run := func(args ...string) result { return tasker(t, dir, append(args, db...)...) }

	for range 2 {
		res := run("run", "test/flaky", "--templates", "tpl", "--json")
		require.Equal(t, 1, res.code, res.String())
	}

	res := run("task", "list")
	require.Equal(t, 0, res.code, res.String())
	require.Regexp(t, `(?m)^ID\s+TEMPLATE\s+STATUS`, res.stdout)
	require.Regexp(t, `(?m)^2\s+test/flaky@1\.0\.0\s+error\s`, res.stdout)
	require.Regexp(t, `(?m)^1\s+test/flaky@1\.0\.0\s+error\s+.*tester$`, res.stdout)

	res = run("task", "list", "--state", "error,blocked", "--json", "--limit", "1")
	require.Equal(t, 0, res.code, res.String())
	var tasks []struct {
		ID     int64  `json:"task_id"`
		Status string `json:"status"`
	}
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &tasks))
	require.Len(t, tasks, 1)
	require.Equal(t, int64(2), tasks[0].ID)
	res = run("task", "list", "--state", "complete", "--json")
	require.Equal(t, 0, res.code, res.String())
	require.JSONEq(t, `[]`, res.stdout)
	res = run("task", "list", "--state", "broken")
	require.Equal(t, 2, res.code, res.String())
	require.Contains(t, res.stderr, "waiting_for_retry")

	res = run("task", "show", "1")
	require.Equal(t, 0, res.code, res.String())
	require.Contains(t, res.stdout, "test/flaky@1.0.0")
	require.Contains(t, res.stdout, "status:    error (2/4 steps done)")
	require.Regexp(t, `(?m)^\s+1\s+✓ first\s+complete\s+1/3`, res.stdout)
	require.Regexp(t, `(?m)^\s+2\s+✗ boom\s+error\s+1/3\s.*<- first$`, res.stdout)
	require.Regexp(t, `(?m)^\s+✓ side\s+complete\s+1/3\s.*<- first$`, res.stdout)
	require.Regexp(t, `(?m)^\s+3\s+· after\s+pending\s+0/3\s+<- boom$`, res.stdout)
	require.Regexp(t, `(?m)^\s+last error: permanent: tasker:fail: planned failure on attempt 1 of step boom$`, res.stdout)

	res = run("task", "show", "1", "--json", "--history")
	require.Equal(t, 0, res.code, res.String())
	var shown struct {
		ID    int64  `json:"task_id"`
		State string `json:"status"`
		Steps []struct {
			Name string `json:"name"`
		} `json:"steps"`
		TaskTransitions []json.RawMessage `json:"task_transitions"`
	}
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &shown))
	require.Equal(t, "error", shown.State)
	require.Len(t, shown.Steps, 4)
	require.NotEmpty(t, shown.TaskTransitions)

	res = run("task", "explain", "1")
	require.Equal(t, 0, res.code, res.String())
	require.Contains(t, res.stdout, "task 1 test/flaky@1.0.0 is error")
	require.Regexp(t, `(?m)^boom\s+error\s+1/3\s+no\s+failed after 1 of 3 attempts`, res.stdout)

	// Retry without running: the step is pending and ready.
	res = run("task", "retry", "1", "--reason", "try again")
	require.Equal(t, 0, res.code, res.String())
	require.Contains(t, res.stdout, "task 1: retrying boom")
	res = run("task", "explain", "1", "--json")
	require.Equal(t, 0, res.code, res.String())
	var explained struct {
		Status string `json:"status"`
		Steps  []struct {
			Name   string `json:"name"`
			Ready  bool   `json:"ready"`
			Reason string `json:"reason"`
		} `json:"steps"`
	}
	require.NoError(t, json.Unmarshal([]byte(res.stdout), &explained))
	require.Equal(t, "pending", explained.Status)
	for _, st := range explained.Steps {
		if st.Name == "boom" {
			require.True(t, st.Ready, st.Reason)
		}
	}

	// Retry and run here: it fails again.
	res = run("task", "retry", "2", "--step", "boom", "--run", "--json")
	require.Equal(t, 1, res.code, res.String())
	require.Equal(t, "error", decodeReport(t, res).Status)
	res = run("task", "retry", "2", "--step", "nope")
	require.Equal(t, 1, res.code, res.String())
	require.Contains(t, res.stderr, `step "nope" not found in task 2`)

	// Resolve the failing step and run the rest.
	res = run("task", "resolve", "1", "boom", "--run", "--actor", "alice", "--reason", "done by hand")
	require.Equal(t, 0, res.code, res.String())
	require.Contains(t, res.stdout, "task 1: step boom is resolved_manually")
	require.Contains(t, res.stdout, "step after complete in")
	require.Contains(t, res.stdout, "complete in")
	res = run("task", "show", "1", "--history")
	require.Equal(t, 0, res.code, res.String())
	require.Regexp(t, `step boom\s+pending\s+resolved_manually\s+resolve\s+alice\s+done by hand`, res.stdout)
	require.Regexp(t, `step boom\s+error\s+pending\s+retry\s+tester\s+try again`, res.stdout)

	// Cancel: a failed task can be cancelled, a finished one cannot.
	res = run("task", "cancel", "2")
	require.Equal(t, 0, res.code, res.String())
	require.Equal(t, "task 2 is cancelled\n", res.stdout)
	res = run("task", "cancel", "1")
	require.Equal(t, 1, res.code, res.String())
	require.Contains(t, res.stderr, "tasker: invalid transition: task 1 cannot cancel from state complete")

	res = run("task", "show", "99")
	require.Equal(t, 1, res.code, res.String())
	require.Equal(t, "tasker: task 99 not found\n", res.stderr)
	res = run("task", "show", "x1")
	require.Equal(t, 2, res.code, res.String())
	res = run("task", "resolve")
	require.Equal(t, 2, res.code, res.String())

	// Resolve a whole task: a failed one can be, a finished one cannot.
	res = run("run", "test/flaky", "--templates", "tpl", "--json")
	require.Equal(t, 1, res.code, res.String())
	res = run("task", "resolve", "3", "--reason", "refunded by hand")
	require.Equal(t, 0, res.code, res.String())
	require.Equal(t, "task 3 is resolved_manually\n", res.stdout)
	res = run("task", "show", "3", "--history")
	require.Equal(t, 0, res.code, res.String())
	require.Regexp(t, `task\s+error\s+resolved_manually\s+resolve\s+tester\s+refunded by hand`, res.stdout)
	res = run("task", "resolve", "1")
	require.Equal(t, 1, res.code, res.String())
	require.Contains(t, res.stderr, "task 1 cannot resolve from state complete")
	res = run("task", "resolve", "3", "--run")
	require.Equal(t, 2, res.code, res.String())
	res = run("task", "frobnicate")
	require.Equal(t, 2, res.code, res.String())
}

func TestMigrateSQLite(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	db := []string{"--database-url", "sqlite:" + filepath.Join(dir, "m.db")}
	run := func(args ...string) result { return tasker(t, dir, append(args, db...)...) }

	res := run("migrate", "status")
	require.Equal(t, 0, res.code, res.String())
	require.Regexp(t, `(?m)^0001\s+init\s+pending$`, res.stdout)

	// The numbers are PostgreSQL's: 0003, 0006-0010, 0013 and 0019 change nothing on SQLite (0022 and 0023 nothing on PostgreSQL).
	names := []string{"0001_init", "0002_queue_notify_when_available", "0003_edges_without_step_fks",
		"0004_transitions_without_most_recent", "0005_queue_claim_index", "0006_transitions_without_checks",
		"0007_claimable_steps_index", "0008_queue_fillfactor", "0009_steps_and_edges_without_task_checks",
		"0010_tasks_unfinished_index", "0011_dashboard_indexes", "0012_tasks_run_at", "0013_queue_notify_per_statement",
		"0014_tasks_retention",
		"0015_task_concurrency_keys", "0016_rate_limits", "0017_concurrency_wake_skip_locked",
		"0018_handler_limits", "0019_queue_notify_from_application", "0020_wake_triggers_notify",
		"0021_queue_in_task_row", "0022_sqlite_trigger_plans", "0023_wake_triggers_on_task_row",
		"0024_concurrency_start_after_claim"}
	last := len(names) - 1
	lines := func(verb string, ns ...string) string {
		var b strings.Builder
		for _, n := range ns {
			b.WriteString(verb + " " + n + "\n")
		}
		return b.String()
	}
	reversed := func(ns []string) []string {
		out := slices.Clone(ns)
		slices.Reverse(out)
		return out
	}
	res = run("migrate", "up")
	require.Equal(t, 0, res.code, res.String())
	require.Equal(t, lines("applied", names...), res.stdout)
	res = run("migrate", "up")
	require.Equal(t, 0, res.code, res.String())
	require.Contains(t, res.stdout, "up to date")

	res = run("migrate", "status")
	require.Equal(t, 0, res.code, res.String())
	require.Regexp(t, `(?m)^0001\s+init\s+applied \d{4}-\d\d-\d\d`, res.stdout)

	// down reverts the latest migration only.
	res = run("migrate", "down")
	require.Equal(t, 0, res.code, res.String())
	require.Equal(t, lines("reverted", names[last]), res.stdout)
	res = run("migrate", "status")
	require.Equal(t, 0, res.code, res.String())
	require.Regexp(t, `(?m)^`+strings.Replace(names[last-1], "_", `\s+`, 1)+`\s+applied `, res.stdout)
	require.Regexp(t, `(?m)^`+strings.Replace(names[last], "_", `\s+`, 1)+`\s+pending$`, res.stdout)

	res = run("migrate", "down", "--all")
	require.Equal(t, 0, res.code, res.String())
	require.Equal(t, lines("reverted", reversed(names[:last])...), res.stdout)
	res = run("migrate", "status")
	require.Equal(t, 0, res.code, res.String())
	require.Regexp(t, `(?m)^0001\s+init\s+pending$`, res.stdout)

	res = run("migrate", "up", "--steps", "1")
	require.Equal(t, 0, res.code, res.String())
	require.Equal(t, lines("applied", names[0]), res.stdout)
	res = run("migrate", "up")
	require.Equal(t, 0, res.code, res.String())
	require.Equal(t, lines("applied", names[1:]...), res.stdout)
	res = run("migrate", "down", "--all")
	require.Equal(t, 0, res.code, res.String())
	require.Equal(t, lines("reverted", reversed(names)...), res.stdout)

	res = run("migrate", "down", "--steps", "0")
	require.Equal(t, 2, res.code, res.String())
	res = run("migrate", "sideways")
	require.Equal(t, 2, res.code, res.String())
}

func TestPostgres(t *testing.T) {
	t.Parallel()
	url := testdb.PostgresURL(t) // skips without TEST_DATABASE_URL
	dir := t.TempDir()
	db := []string{"--database-url", url}
	run := func(args ...string) result { return tasker(t, dir, append(args, db...)...) }

	res := run("run", "demo/diamond", "--templates", filepath.Join(examples, "diamond"))
	require.Equal(t, 1, res.code, res.String())
	require.Contains(t, res.stderr, "pending migration")
	require.Contains(t, res.stderr, "tasker migrate up")

	res = run("migrate", "up")
	require.Equal(t, 0, res.code, res.String())
	res = run("run", "demo/diamond", "--templates", filepath.Join(examples, "diamond"), "--json")
	require.Equal(t, 0, res.code, res.String())
	require.Equal(t, "complete", decodeReport(t, res).Status)
	res = run("task", "list")
	require.Equal(t, 0, res.code, res.String())
	require.Contains(t, res.stdout, "demo/diamond@1.0.0")
	res = run("migrate", "status")
	require.Equal(t, 0, res.code, res.String())
	require.Contains(t, res.stdout, "(postgres)")
}

func TestServe(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cmd := exec.Command(bin, "serve", "--database-url", "sqlite:"+filepath.Join(dir, "serve.db"),
		"--templates", filepath.Join(examples, "order_fulfillment"), "--listen", "127.0.0.1:0", "--workers", "2")
	cmd.Dir = dir
	cmd.Env = env()
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	waited := make(chan error, 1)
	t.Cleanup(func() {
		select {
		case <-waited:
		default:
			_ = cmd.Process.Kill()
			<-waited
		}
	})

	// Read the log; the first line names the address.
	addrCh := make(chan string, 1)
	var logBuf bytes.Buffer
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`listen=(127\.0\.0\.1:\d+)`)
		for sc.Scan() {
			logBuf.WriteString(sc.Text() + "\n")
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case addrCh <- m[1]:
				default:
				}
			}
		}
	}()
	go func() {
		<-logDone // stderr drained before Wait closes the pipe
		waited <- cmd.Wait()
	}()
	var addr string
	select {
	case addr = <-addrCh:
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not log its listen address")
	}
	base := "http://" + addr

	body := `{"namespace": "shop", "name": "order_fulfillment",
		"context": {"order_id": 42, "customer_email": "grace@example.com"}}`
	resp, err := http.Post(base+"/v1/tasks", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	var created struct {
		Task struct {
			ID     int64  `json:"task_id"`
			Status string `json:"status"`
		} `json:"task"`
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode, string(raw))
	require.NoError(t, json.Unmarshal(raw, &created), string(raw))
	require.Positive(t, created.Task.ID)

	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := http.Get(fmt.Sprintf("%s/v1/tasks/%d", base, created.Task.ID))
		require.NoError(t, err)
		var got struct {
			Task struct {
				Status string `json:"status"`
				Steps  []struct {
					Name     string `json:"name"`
					Attempts int    `json:"attempts"`
				} `json:"steps"`
			} `json:"task"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
		resp.Body.Close()
		if got.Task.Status == "complete" {
			for _, st := range got.Task.Steps {
				if st.Name == "charge_payment" {
					require.Equal(t, 2, st.Attempts)
				}
			}
			break
		}
		require.NotContains(t, []string{"error", "blocked", "cancelled"}, got.Task.Status)
		require.True(t, time.Now().Before(deadline), "task did not complete; last status %s", got.Task.Status)
		time.Sleep(100 * time.Millisecond)
	}

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-waited:
		require.NoError(t, err, "serve must exit 0 after SIGTERM; log:\n%s", logBuf.String())
		waited <- err // for the cleanup
	case <-time.After(time.Minute):
		t.Fatalf("serve did not stop within a minute of SIGTERM; log:\n%s", logBuf.String())
	}
	log := logBuf.String()
	require.Contains(t, log, "owner=")
	require.Contains(t, log, `msg="shutting down"`)
	require.Contains(t, log, "msg=stopped")
}

func TestServeRefusesPublicListenWithoutToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, listen := range []string{"0.0.0.0:0", ":0"} {
		res := tasker(t, dir, "serve", "--listen", listen, "--database-url", "sqlite:"+filepath.Join(dir, "x.db"))
		require.Equal(t, 2, res.code, res.String())
		require.Contains(t, res.stderr, "without a token")
		require.Contains(t, res.stderr, "TASKER_API_TOKEN")
	}
	require.NoFileExists(t, filepath.Join(dir, "x.db"))
}

func TestVersionAndUsage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	res := tasker(t, dir, "version")
	require.Equal(t, 0, res.code, res.String())
	require.Regexp(t, `^tasker \S+ \(go1\.`, res.stdout)

	res = tasker(t, dir, "frobnicate")
	require.Equal(t, 2, res.code, res.String())
	require.Equal(t, "tasker: unknown command \"frobnicate\" for \"tasker\"\n", res.stderr)

	res = tasker(t, dir, "--help")
	require.Equal(t, 0, res.code, res.String())
	for _, c := range []string{"run", "serve", "task", "template", "migrate", "version"} {
		require.Regexp(t, `(?m)^\s+`+c+`\s`, res.stdout)
	}
}

// The deadline example: the task expires after 2 s, `run` exits 1, and
// `task explain` says why and shows the deadline.
func TestRunDeadlineExample(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	examples, err := filepath.Abs("../../examples/deadline")
	require.NoError(t, err)
	db := []string{"--database-url", "sqlite:" + filepath.Join(dir, "deadline.db"), "--templates", examples}
	res := tasker(t, dir, append([]string{"run", "reports/daily_report", "--json"}, db...)...)
	require.Equal(t, 1, res.code, res.String())
	rep := decodeReport(t, res)
	require.Equal(t, "error", rep.Status)
	for _, st := range rep.Steps {
		require.Equal(t, "cancelled", st.Status, st.Name)
	}
	res = tasker(t, dir, append([]string{"task", "explain", "1"}, db...)...)
	require.Equal(t, 0, res.code, res.String())
	require.Regexp(t, `(?m)^task 1 reports/daily_report@1\.0\.0 is error: deadline exceeded: timeout_seconds 2 elapsed at `, res.stdout)
	require.Regexp(t, `(?m)^deadline \S+ \(timeout_seconds 2 after creation\)$`, res.stdout)
}
