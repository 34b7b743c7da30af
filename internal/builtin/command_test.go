//go:build unix

package builtin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var cmdOn = Options{EnableCommand: true}

func TestCommandDisabled(t *testing.T) {
	t.Parallel()
	_, err := run(t, Options{}, CommandName, newStep("c", map[string]any{"command": "/bin/echo"}))
	requirePermanent(t, err)
	require.Contains(t, err.Error(), "tasker:command is disabled")
	require.Contains(t, err.Error(), "--enable-command")
	require.Contains(t, err.Error(), "TASKER_ENABLE_COMMAND=1")
	require.Contains(t, err.Error(), `step "c"`)
}

func TestCommandJSONStdout(t *testing.T) {
	t.Parallel()
	got, err := run(t, cmdOn, CommandName, newStep("c", map[string]any{
		"command": "/bin/echo",
		"args":    []any{`{"a": 1, "id": ${context.order.id}}`},
	}))
	require.NoError(t, err)
	require.Equal(t, decode(t, `{"a":1,"id":1001}`), normalize(t, got))
}

func TestCommandPlainStdout(t *testing.T) {
	t.Parallel()
	got, err := run(t, cmdOn, CommandName, newStep("c", map[string]any{
		"command": "echo", // looked up in PATH
		"args":    []string{"hello", "${context.customer}"},
	}))
	require.NoError(t, err)
	require.Equal(t, decode(t, `{"stdout":"hello ann"}`), normalize(t, got))
}

func TestCommandExitRetryable(t *testing.T) {
	t.Parallel()
	_, err := run(t, cmdOn, CommandName, newStep("c", map[string]any{
		"command": "echo something went wrong >&2; exit 1",
		"shell":   true,
	}))
	re := requireRetryable(t, err)
	require.Zero(t, re.After)
	require.Contains(t, err.Error(), `tasker:command: step "c": command sh -c "echo something went wrong >&2; exit 1": exited with code 1; stderr: something went wrong`)
}

func TestCommandPermanentExitCode(t *testing.T) {
	t.Parallel()
	cfg := map[string]any{
		"command":              "/bin/sh",
		"args":                 []any{"-c", "echo bad input >&2; exit 3"},
		"permanent_exit_codes": []any{2, float64(3)},
	}
	_, err := run(t, cmdOn, CommandName, newStep("c", cfg))
	requirePermanent(t, err)
	require.Contains(t, err.Error(), "exited with code 3; stderr: bad input")

	cfg["args"] = []any{"-c", "exit 4"}
	_, err = run(t, cmdOn, CommandName, newStep("c", cfg))
	requireRetryable(t, err)
	require.Contains(t, err.Error(), "exited with code 4")
}

func TestCommandStderrTail(t *testing.T) {
	t.Parallel()
	_, err := run(t, cmdOn, CommandName, newStep("c", map[string]any{
		"command": `i=0; while [ $i -lt 500 ]; do echo "line $i of noise"; i=$((i+1)); done >&2; echo THE-END >&2; exit 1`,
		"shell":   true,
	}))
	requireRetryable(t, err)
	msg := err.Error()
	require.Contains(t, msg, "stderr: ...")
	require.True(t, strings.HasSuffix(msg, "THE-END"), msg)
	require.NotContains(t, msg, "line 0 of noise")
	require.Less(t, len(msg), stderrTailBytes+300)
}

func TestCommandEnvironment(t *testing.T) {
	t.Parallel()
	step := newStep("envstep", map[string]any{
		"command": "/usr/bin/env",
		"env": map[string]any{
			"ORDER_ID":  "${context.order.id}",
			"ORDER":     "${context.order}",
			"GREETING":  "hi ${context.customer}",
			"LITERAL":   7,
			"TOKEN":     "${steps.auth.token}",
			"EMPTY_REF": "${context.nothing}",
		},
	})
	step.Attempt = 2
	got, err := run(t, cmdOn, CommandName, step)
	require.NoError(t, err)
	out := normalize(t, got).(map[string]any)["stdout"].(string)
	env := map[string]string{}
	for line := range strings.SplitSeq(out, "\n") {
		k, v, ok := strings.Cut(line, "=")
		require.True(t, ok, line)
		env[k] = v
	}
	want := map[string]string{
		"ORDER_ID":         "1001",
		"ORDER":            `{"id":1001,"sku":"A-17","tags":["x","y"]}`,
		"GREETING":         "hi ann",
		"LITERAL":          "7",
		"TOKEN":            "tok-123",
		"EMPTY_REF":        "",
		"TASKER_TASK_ID":   "42",
		"TASKER_STEP_NAME": "envstep",
		"TASKER_ATTEMPT":   "2",
		"TASKER_CONTEXT":   `{"order":{"id":1001,"sku":"A-17","tags":["x","y"]},"customer":"ann","big":12345678901234567890,"nothing":null}`,
	}
	for _, k := range []string{"PATH", "HOME"} {
		if v, ok := os.LookupEnv(k); ok {
			want[k] = v
		}
	}
	// The context file holds the same context and is gone after the step.
	ctxFile := env["TASKER_CONTEXT_FILE"]
	require.NotEmpty(t, ctxFile)
	delete(env, "TASKER_CONTEXT_FILE")
	require.NoFileExists(t, ctxFile, "the context file is removed after the attempt")
	require.Equal(t, want, env, "exactly these variables, not the parent's whole environment")
}

func TestCommandStdinDocument(t *testing.T) {
	t.Parallel()
	step := newStep("reader", map[string]any{"command": "cat"})
	step.Attempt = 3
	got, err := run(t, cmdOn, CommandName, step)
	require.NoError(t, err)
	require.Equal(t, decode(t, `{
		"context": {"order":{"id":1001,"sku":"A-17","tags":["x","y"]},"customer":"ann","big":12345678901234567890,"nothing":null},
		"dependency_results": {"auth":{"token":"tok-123"},"price":{"total":19.5,"lines":[{"sku":"A-17","qty":2},{"sku":"B-2","qty":1}]}},
		"step": "reader",
		"attempt": 3
	}`), normalize(t, got))
}

func TestCommandStdinConfigured(t *testing.T) {
	t.Parallel()
	got, err := run(t, cmdOn, CommandName, newStep("reader", map[string]any{"command": "cat", "stdin": "plain ${context.customer}\n"}))
	require.NoError(t, err)
	require.Equal(t, decode(t, `{"stdout":"plain ann"}`), normalize(t, got))

	got, err = run(t, cmdOn, CommandName, newStep("reader", map[string]any{"command": "cat", "stdin": map[string]any{"sku": "${context.order.sku}"}}))
	require.NoError(t, err)
	require.Equal(t, decode(t, `{"sku":"A-17"}`), normalize(t, got))
}

func TestCommandNoShellByDefault(t *testing.T) {
	t.Parallel()
	got, err := run(t, cmdOn, CommandName, newStep("c", map[string]any{
		"command": "/bin/echo",
		"args":    []any{"$HOME", "a;b", "`id`"},
	}))
	require.NoError(t, err)
	require.Equal(t, decode(t, "{\"stdout\":\"$HOME a;b `id`\"}"), normalize(t, got))
}

func TestCommandShell(t *testing.T) {
	t.Parallel()
	got, err := run(t, cmdOn, CommandName, newStep("c", map[string]any{
		"command": `printf '%s|%s|%s' "$HOME" "$1" "$2"`,
		"shell":   true,
		"args":    []any{"a b", "${context.customer}; rm -rf /"},
	}))
	require.NoError(t, err)
	want := os.Getenv("HOME") + "|a b|ann; rm -rf /"
	require.Equal(t, map[string]any{"stdout": want}, normalize(t, got))
}

func TestCommandDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "data.json"), []byte(`{"from":"file"}`), 0o600))
	got, err := run(t, cmdOn, CommandName, newStep("c", map[string]any{"command": "cat", "args": []any{"data.json"}, "dir": dir}))
	require.NoError(t, err)
	require.Equal(t, decode(t, `{"from":"file"}`), normalize(t, got))
}

func TestCommandNotFound(t *testing.T) {
	t.Parallel()
	for _, cfg := range []map[string]any{
		{"command": "no-such-program-for-tasker-tests"},
		{"command": "/nonexistent/program"},
		{"command": "/bin/echo", "dir": "/nonexistent/dir"},
	} {
		_, err := run(t, cmdOn, CommandName, newStep("c", cfg))
		requirePermanent(t, err)
		require.Contains(t, err.Error(), "could not start")
	}
}

func TestCommandOversizedStdout(t *testing.T) {
	t.Parallel()
	_, err := run(t, Options{EnableCommand: true, MaxResponseBytes: 1000}, CommandName, newStep("c", map[string]any{
		"command": `i=0; while [ $i -lt 100 ]; do echo "0123456789012345678901234567890123456789"; i=$((i+1)); done`,
		"shell":   true,
	}))
	requirePermanent(t, err)
	require.Contains(t, err.Error(), "standard output exceeds the limit of 1000 bytes")
}

func TestCommandBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cfg map[string]any
		msg string
	}{
		{nil, `tasker:command: step "c": handler_config.command: required`},
		{map[string]any{"command": []any{"ls"}}, "handler_config.command: must be a string, got a list"},
		{map[string]any{"command": "ls", "args": "-l"}, "handler_config.args: must be a list"},
		{map[string]any{"command": "ls", "args": []any{map[string]any{}}}, "handler_config.args[0]: must be a string"},
		{map[string]any{"command": "ls", "args": []any{"${context.zzz}"}}, "handler_config.args[0]: cannot resolve reference ${context.zzz}"},
		{map[string]any{"command": "ls", "env": map[string]any{"A": "${steps.zzz}"}}, "handler_config.env.A: cannot resolve reference ${steps.zzz}"},
		{map[string]any{"command": "ls", "env": map[string]any{"A=B": "x"}}, "handler_config.env"},
		{map[string]any{"command": "ls", "env": []any{"A=B"}}, "handler_config.env: must be a map"},
		{map[string]any{"command": "ls", "shell": "sometimes"}, "handler_config.shell: must be a boolean"},
		{map[string]any{"command": "ls", "timeout_seconds": -1}, "handler_config.timeout_seconds"},
		{map[string]any{"command": "ls", "permanent_exit_codes": []any{1.5}}, "handler_config.permanent_exit_codes[0]"},
		{map[string]any{"command": "ls", "dir": 3}, "handler_config.dir: must be a string"},
	}
	for _, tc := range tests {
		_, err := run(t, cmdOn, CommandName, newStep("c", tc.cfg))
		requirePermanent(t, err)
		require.Contains(t, err.Error(), tc.msg)
	}
}

func TestCommandTimeoutKillsProcessGroup(t *testing.T) {
	t.Parallel()
	// On a loaded machine the script may not have written both pids when
	// the timeout fires: then try again with twice the timeout.
	for timeout := 0.5; ; timeout *= 2 {
		pidFile := filepath.Join(t.TempDir(), "pids")
		start := time.Now()
		_, err := run(t, cmdOn, CommandName, newStep("slow", map[string]any{
			"command":         `sleep 30 & echo $! > "$PID_FILE"; sh -c 'sleep 30' & echo $! >> "$PID_FILE.tmp"; mv "$PID_FILE.tmp" "$PID_FILE.2"; sleep 30`,
			"shell":           true,
			"env":             map[string]any{"PID_FILE": pidFile},
			"timeout_seconds": timeout,
		}))
		elapsed := time.Since(start)
		requireRetryable(t, err)
		want := time.Duration(timeout * float64(time.Second))
		require.Contains(t, err.Error(), fmt.Sprintf("timed out after %s", want))
		require.Less(t, elapsed, want+10*time.Second, "the handler returns promptly")

		if _, err := os.Stat(pidFile + ".2"); err != nil {
			require.Less(t, timeout, 16.0, "the script never got to start its children")
			continue
		}
		pids := append(readPids(t, pidFile), readPids(t, pidFile+".2")...)
		require.Len(t, pids, 2)
		for _, pid := range pids {
			requireGone(t, pid)
		}
		return
	}
}

func TestCommandContextDeadline(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := runCtx(ctx, t, cmdOn, CommandName, newStep("slow", map[string]any{"command": "sleep", "args": []any{"30"}}))
	requireRetryable(t, err)
	require.Contains(t, err.Error(), "timed out (step deadline)")
	require.Less(t, time.Since(start), 5*time.Second)
}

func TestCommandBackgroundChildHoldingStdout(t *testing.T) {
	t.Parallel()
	// The script exits at once but leaves a child holding stdout open: the
	// handler gives up waiting for the pipe after a short delay, keeps what
	// was written and kills the leftover child.
	pidFile := filepath.Join(t.TempDir(), "pids")
	start := time.Now()
	got, err := run(t, cmdOn, CommandName, newStep("bg", map[string]any{
		"command": `sleep 30 & echo $! > "$PID_FILE"; echo '{"done":true}'`,
		"shell":   true,
		"env":     map[string]any{"PID_FILE": pidFile},
	}))
	require.NoError(t, err)
	require.Equal(t, decode(t, `{"done":true}`), normalize(t, got))
	require.Less(t, time.Since(start), commandWaitDelay+3*time.Second)
	for _, pid := range readPids(t, pidFile) {
		requireGone(t, pid)
	}
}

func readPids(t *testing.T, path string) []int {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var pids []int
	for f := range strings.FieldsSeq(string(data)) {
		pid, err := strconv.Atoi(f)
		require.NoError(t, err)
		pids = append(pids, pid)
	}
	sort.Ints(pids)
	return pids
}

// requireGone waits until pid no longer runs. A killed orphan may linger as
// a zombie when nothing reaps it (as in some containers); that counts as gone.
func requireGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if processGone(pid) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d is still running", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func processGone(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err == nil {
		// "pid (comm) S ...": the state follows the last parenthesis.
		if i := bytes.LastIndexByte(data, ')'); i >= 0 {
			if f := strings.Fields(string(data[i+1:])); len(f) > 0 {
				return f[0] == "Z" || f[0] == "X"
			}
		}
		return false
	}
	if errors.Is(err, fs.ErrNotExist) {
		if _, statErr := os.Stat("/proc/self/stat"); statErr == nil {
			return true // /proc works and the process is not in it
		}
	}
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}
