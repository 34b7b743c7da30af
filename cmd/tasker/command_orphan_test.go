//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	tk "github.com/tasker-systems/tasker"
)

// A `tasker serve` killed with SIGKILL while a tasker:command step runs
// `sh -c 'echo start; sleep 60; echo end'` leaves no process of the step
// behind: not the shell, not its sleep (issue 14, item 2).
func TestServeSIGKILLLeavesNoCommandProcess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	marker := fmt.Sprintf("tasker-orphan-marker-%d-%d", os.Getpid(), time.Now().UnixNano())
	templates := filepath.Join(dir, "templates")
	const tmpl = `name: orphan
namespace_name: kill
version: 1.0.0
step_templates:
  - name: slow
    handler_class: tasker:command
    handler_config:
      command: "echo start; sleep 60; echo end # %[1]s"
      shell: true
      env: {ORPHAN_MARKER: "%[1]s"}
      timeout_seconds: 90
`
	writeFiles(t, templates, map[string]string{"orphan.yml": fmt.Sprintf(tmpl, marker)})
	dbURL := "sqlite:" + filepath.Join(dir, "orphan.db")
	p := startServe(t, dir, "--database-url", dbURL, "--templates", templates, "--workers", "2", "--enable-command")

	ctx := context.Background()
	c, err := tk.Open(ctx, tk.Config{DatabaseURL: dbURL, TemplatesDir: templates})
	require.NoError(t, err)
	defer c.Close()
	_, _, err = c.InitializeTask(ctx, &tk.TaskRequest{Namespace: "kill", Name: "orphan", Context: []byte(`{}`)})
	require.NoError(t, err)

	// Running: the shell has started its sleep (which carries the marker in
	// its environment).
	deadline := time.Now().Add(60 * time.Second)
	for !slices.ContainsFunc(stepProcesses(marker), func(p string) bool { return strings.Contains(p, `"sleep 60 "`) }) {
		require.True(t, time.Now().Before(deadline), "the step did not start; serve log:\n%s", p.log())
		time.Sleep(25 * time.Millisecond)
	}
	require.NoError(t, p.cmd.Process.Kill())
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not exit after SIGKILL")
	}

	deadline = time.Now().Add(15 * time.Second)
	for {
		left := stepProcesses(marker)
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes of the step outlived the SIGKILLed server: %v", left)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// stepProcesses lists live processes (zombies excluded: nothing may reap a
// killed orphan in a container) whose command line or environment holds
// marker.
func stepProcesses(marker string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		procDir := filepath.Join("/proc", e.Name())
		stat, err := os.ReadFile(filepath.Join(procDir, "stat"))
		if err != nil {
			continue
		}
		if i := bytes.LastIndexByte(stat, ')'); i < 0 || i+2 >= len(stat) || stat[i+2] == 'Z' {
			continue
		}
		environ, _ := os.ReadFile(filepath.Join(procDir, "environ"))
		cmdline, _ := os.ReadFile(filepath.Join(procDir, "cmdline"))
		if bytes.Contains(environ, []byte(marker)) || bytes.Contains(cmdline, []byte(marker)) {
			out = append(out, fmt.Sprintf("%d %q", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
		}
	}
	return out
}
