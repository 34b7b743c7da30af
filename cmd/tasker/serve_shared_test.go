package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	tk "github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// serveProc is one `tasker serve` process of a test.
type serveProc struct {
	cmd    *exec.Cmd
	owner  chan string
	done   chan error
	mu     sync.Mutex
	logBuf strings.Builder
}

func (p *serveProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.logBuf.String()
}

// startServe starts `tasker serve` and waits until it logs its owner name.
func startServe(t *testing.T, dir string, args ...string) *serveProc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "--listen", "127.0.0.1:0"}, args...)...)
	cmd.Dir = dir
	cmd.Env = env()
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &serveProc{cmd: cmd, owner: make(chan string, 1), done: make(chan error, 1)}
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`owner=(\S+)`)
		for sc.Scan() {
			p.mu.Lock()
			p.logBuf.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case p.owner <- strings.Trim(m[1], `"`):
				default:
				}
			}
		}
	}()
	go func() {
		<-logDone
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	select {
	case owner := <-p.owner:
		p.owner <- owner
	case err := <-p.done:
		t.Fatalf("serve exited early: %v\n%s", err, p.log())
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not start; log:\n%s", p.log())
	}
	return p
}

// stop sends SIGTERM and requires a clean exit.
func (p *serveProc) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.done:
		require.NoError(t, err, "serve must exit 0 after SIGTERM; log:\n%s", p.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not stop within 30 s of SIGTERM; log:\n%s", p.log())
	}
}

// Three `tasker serve` processes on one PostgreSQL drain 300 tasks: every
// task completes, every step runs exactly once (checked from a log written
// by the step itself), every process takes a share, and one process stopped
// with SIGTERM in the middle (and restarted) loses nothing.
func TestServeThreeProcessesShareWork(t *testing.T) {
	t.Parallel()
	url := testdb.PostgresURL(t)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "steps.log")
	templates := filepath.Join(dir, "templates")
	const tmpl = `name: shared
namespace_name: multi
version: 1.0.0
step_templates:
  - name: a
    handler_class: tasker:command
    handler_config:
      command: sh
      args: ["-c", "echo \"$0 a\" >> \"$1\"", "${context.n}", "%[1]s"]
  - {name: b, handler_class: tasker:noop, depends_on_step: a}
  - {name: c, handler_class: tasker:noop, depends_on_step: a}
  - name: d
    depends_on_steps: [b, c]
    handler_class: tasker:command
    handler_config:
      command: sh
      args: ["-c", "echo \"$0 d\" >> \"$1\"", "${context.n}", "%[1]s"]
`
	writeFiles(t, templates, map[string]string{"shared.yml": fmt.Sprintf(tmpl, logPath)})
	res := tasker(t, dir, "migrate", "up", "--database-url", url)
	require.Equal(t, 0, res.code, res.String())

	args := []string{"--database-url", url, "--templates", templates, "--workers", "4", "--enable-command"}
	procs := []*serveProc{startServe(t, dir, args...), startServe(t, dir, args...), startServe(t, dir, args...)}

	ctx := context.Background()
	c, err := tk.Open(ctx, tk.Config{DatabaseURL: url, TemplatesDir: templates})
	require.NoError(t, err)
	defer c.Close()
	const n = 300
	for i := range n {
		_, _, err := c.InitializeTask(ctx, &tk.TaskRequest{Namespace: "multi", Name: "shared",
			Context: []byte(fmt.Sprintf(`{"n": %d}`, i))})
		require.NoError(t, err)
		if i == n/3 {
			// Stop one runner gracefully while work is in flight, and
			// start a replacement.
			procs[0].stop(t)
			procs = append(procs, startServe(t, dir, args...))
		}
	}

	// The runners must keep making progress: on a loaded machine 300 tasks
	// (600 forked shells) can take minutes, so the limit is on a stall (no
	// task completed for 2 minutes), not on the whole run.
	const stall = 2 * time.Minute
	last, lastAt := -1, time.Now()
	for {
		done, err := c.ListTasks(ctx, &tk.TaskFilter{States: []tk.TaskState{"complete"}, Limit: 1000})
		require.NoError(t, err)
		if len(done) == n {
			break
		}
		bad, err := c.ListTasks(ctx, &tk.TaskFilter{States: []tk.TaskState{"error", "blocked", "cancelled"}})
		require.NoError(t, err)
		require.Empty(t, bad, "no task may fail")
		if len(done) > last {
			last, lastAt = len(done), time.Now()
		}
		require.Less(t, time.Since(lastAt), stall, "stalled: %d of %d tasks completed, none in %s", len(done), n, stall)
		time.Sleep(200 * time.Millisecond)
	}
	for _, p := range procs[1:] {
		p.stop(t)
	}

	// Exactly once, from the steps' own log.
	raw, err := os.ReadFile(logPath)
	require.NoError(t, err)
	seen := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		seen[line]++
	}
	for i := range n {
		for _, step := range []string{"a", "d"} {
			require.Equal(t, 1, seen[fmt.Sprintf("%d %s", i, step)], "task n=%d step %s", i, step)
		}
	}
	require.Len(t, seen, 2*n)

	// Every step took one attempt, and every process did a share.
	tasks, err := c.ListTasks(ctx, &tk.TaskFilter{Limit: 1000})
	require.NoError(t, err)
	require.Len(t, tasks, n)
	perOwner := map[string]int{}
	for _, task := range tasks {
		d, err := c.Task(ctx, task.ID)
		require.NoError(t, err)
		for _, st := range d.Steps {
			require.Equal(t, 1, st.Attempts, "task %d step %s", task.ID, st.Name)
		}
		_, stepTrs, err := c.Transitions(ctx, task.ID)
		require.NoError(t, err)
		for _, tr := range stepTrs {
			if tr.ToState == "in_progress" {
				perOwner[tr.Actor]++
			}
		}
	}
	for i, p := range procs {
		owner := <-p.owner
		if i == 0 {
			continue // stopped early; it may or may not have claimed steps
		}
		require.Positive(t, perOwner[owner], "runner %s ran no step; shares: %v", owner, perOwner)
	}
	t.Logf("steps per runner: %v", perOwner)
}
