//go:build linux

package builtin

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// runnerHelperEnv makes this test binary act as a runner that runs one
// command step and blocks (see TestCommandDiesWithRunner).
const runnerHelperEnv = "TASKER_TEST_RUNNER_HELPER_MARKER"

// TestCommandDiesWithRunner SIGKILLs a process that is running a command
// step (sh -> sleep) and requires every process of the step to go away with
// it: the shell, its sleeping child and the supervisor.
func TestCommandDiesWithRunner(t *testing.T) {
	if marker := os.Getenv(runnerHelperEnv); marker != "" {
		runnerHelper(marker)
		return
	}
	t.Parallel()
	marker := fmt.Sprintf("tasker-orphan-%d-%d", os.Getpid(), time.Now().UnixNano())
	cmd := exec.Command(os.Args[0], "-test.run=^TestCommandDiesWithRunner$", "-test.count=1")
	cmd.Env = append(os.Environ(), runnerHelperEnv+"="+marker)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	// Wait until the step's shell has started its sleep.
	waitFor(t, 60*time.Second, func() bool { return sleepRuns(marker) },
		func() string { return "the step did not start; helper output:\n" + out.String() })
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()

	waitFor(t, 10*time.Second, func() bool { return len(markedProcesses(marker)) == 0 },
		func() string {
			return fmt.Sprintf("processes of the step outlived the runner: %v", markedProcesses(marker))
		})
}

// runnerHelper runs a command step whose processes carry marker in their
// environment, as a runner would, and never returns on its own.
func runnerHelper(marker string) {
	step := newStep("orphan", map[string]any{
		"command": "echo start; sleep 60; echo end # " + marker,
		"shell":   true,
		"env":     map[string]any{"TASKER_TEST_MARKER": marker},
	})
	_, err := Handlers(cmdOn)[CommandName].Handle(context.Background(), step)
	fmt.Fprintln(os.Stderr, "the step ended before the runner was killed:", err)
	os.Exit(3)
}

// sleepRuns reports whether a marked "sleep 60" process runs.
func sleepRuns(marker string) bool {
	for _, pid := range markedProcesses(marker) {
		cmdline, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		if string(cmdline) == "sleep\x0060\x00" {
			return true
		}
	}
	return false
}

// markedProcesses lists the live processes (not zombies) whose command line
// or environment contains marker.
func markedProcesses(marker string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		dir := filepath.Join("/proc", e.Name())
		stat, err := os.ReadFile(filepath.Join(dir, "stat"))
		if err != nil {
			continue
		}
		// The state follows the parenthesised command name.
		if i := bytes.LastIndexByte(stat, ')'); i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' {
			continue
		}
		environ, _ := os.ReadFile(filepath.Join(dir, "environ"))
		cmdline, _ := os.ReadFile(filepath.Join(dir, "cmdline"))
		if bytes.Contains(environ, []byte(marker)) || bytes.Contains(cmdline, []byte(marker)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, cond func() bool, msg func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg())
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestCommandLargeContext runs a command step with a 300 KiB task context:
// the program starts, finds the context in TASKER_CONTEXT_FILE and on stdin,
// and TASKER_CONTEXT is left unset.
func TestCommandLargeContext(t *testing.T) {
	t.Parallel()
	step := newStep("big", map[string]any{
		"command": `printf '{"env_set":%s,"file_bytes":%s,"stdin_bytes":%s}' ` +
			`"$([ -n "${TASKER_CONTEXT+x}" ] && echo true || echo false)" ` +
			`"$(wc -c < "$TASKER_CONTEXT_FILE")" "$(wc -c)"`,
		"shell": true,
	})
	blob := strings.Repeat("x", 300<<10)
	step.Context = []byte(`{"blob":"` + blob + `"}`)
	got, err := run(t, cmdOn, CommandName, step)
	require.NoError(t, err)
	res := normalize(t, got).(map[string]any)
	require.Equal(t, false, res["env_set"])
	require.EqualValues(t, len(step.Context), res["file_bytes"])
	require.Greater(t, res["stdin_bytes"].(float64), float64(300<<10), "the stdin document holds the context")

	// A small context is in both places.
	step = newStep("small", map[string]any{
		"command": `[ "$TASKER_CONTEXT" = "$(cat "$TASKER_CONTEXT_FILE")" ] && echo same`,
		"shell":   true,
	})
	got, err = run(t, cmdOn, CommandName, step)
	require.NoError(t, err)
	require.Equal(t, decode(t, `{"stdout":"same"}`), normalize(t, got))
}

// TestCommandTerminatedBySignal reports a program killed by a signal as a
// retryable error naming the signal.
func TestCommandTerminatedBySignal(t *testing.T) {
	t.Parallel()
	_, err := run(t, cmdOn, CommandName, newStep("sig", map[string]any{"command": "kill -TERM $$", "shell": true}))
	requireRetryable(t, err)
	require.Contains(t, err.Error(), "terminated (signal: terminated)")
}

// TestCommandNotExecutable classifies start failures reported by the
// supervisor: a file that is not a program is permanent.
func TestCommandNotExecutable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "data.txt")
	require.NoError(t, os.WriteFile(p, []byte("not a program\x00\x01"), 0o644))
	_, err := run(t, cmdOn, CommandName, newStep("c", map[string]any{"command": p}))
	requirePermanent(t, err)
	require.Contains(t, err.Error(), "could not start")
	require.ErrorIs(t, err, syscall.EACCES)
}

// BenchmarkCommandSupervised measures one tasker:command attempt of
// /bin/true, supervisor included; BenchmarkCommandDirect the same program
// run without it, for comparison.
func BenchmarkCommandSupervised(b *testing.B) {
	h := Handlers(cmdOn)[CommandName]
	step := newStep("true", map[string]any{"command": "/bin/true"})
	for b.Loop() {
		if _, err := h.Handle(context.Background(), step); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCommandDirect(b *testing.B) {
	spec := &commandSpec{path: "/bin/true"}
	for b.Loop() {
		var out, errOut bytes.Buffer
		if res := runDirect(context.Background(), spec, "/bin/true", []string{"/bin/true"}, nil, &out, &errOut); !res.ok() {
			b.Fatal(res)
		}
	}
}

// TestCommandLeftoversKilledAtExit: a background process that let go of the
// output is still killed when the program exits, so a finished step leaves
// nothing running.
func TestCommandLeftoversKilledAtExit(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "pids")
	got, err := run(t, cmdOn, CommandName, newStep("bg", map[string]any{
		"command": `sleep 30 >/dev/null 2>&1 </dev/null & echo $! > "$PID_FILE"; echo '{"done":true}'`,
		"shell":   true,
		"env":     map[string]any{"PID_FILE": pidFile},
	}))
	require.NoError(t, err)
	require.Equal(t, decode(t, `{"done":true}`), normalize(t, got))
	pids := readPids(t, pidFile)
	require.Len(t, pids, 1)
	requireGone(t, pids[0])
}

// TestCommandDirectFallback covers the path taken where no supervisor can be
// started (a c-shared build): exit codes are reported and the program's
// group is killed when it exits.
func TestCommandDirectFallback(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "pids")
	spec := &commandSpec{path: shellPath, env: []string{"PID_FILE=" + pidFile}}
	argv := []string{shellPath, "-c", `sleep 30 >/dev/null 2>&1 & echo $! > "$PID_FILE"; echo out; exit 3`}
	var out, errOut bytes.Buffer
	res := runDirect(context.Background(), spec, shellPath, argv, nil, &out, &errOut)
	require.True(t, res.finished)
	require.Equal(t, 3, res.exitCode)
	require.Equal(t, "out\n", out.String())
	requireGone(t, readPids(t, pidFile)[0])

	res = runDirect(context.Background(), spec, shellPath, []string{shellPath, "-c", "kill -KILL $$"}, nil, &out, &errOut)
	require.Equal(t, "signal: killed", res.signal)
}
