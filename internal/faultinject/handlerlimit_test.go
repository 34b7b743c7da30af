package faultinject_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/faultinject"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// handlerProbeLimit is the probe's limit of the harness handler class.
const handlerProbeLimit = 3

// handlerProbeYAML is a template of three parallel steps of the harness's
// handler class; limited declares handler_limits for the class (false: the
// control, enforcement off).
func handlerProbeYAML(name string, limited bool) string {
	decl := ""
	if limited {
		decl = fmt.Sprintf("handler_limits:\n  %s: %d\n", faultinject.HandlerClass, handlerProbeLimit)
	}
	y := fmt.Sprintf("name: %s\nnamespace_name: %s\n%sstep_templates:\n", name, faultinject.Namespace, decl)
	for _, s := range []string{"a", "b", "c"} {
		y += fmt.Sprintf("  - {name: %s, handler_class: %s, default_retry_limit: %d}\n", s, faultinject.HandlerClass,
			faultinject.MaxAttempts)
	}
	return y
}

// createHandlerProbes creates n tasks of the template name, each step
// sleeping sleepMS.
func createHandlerProbes(t *testing.T, c *tasker.Client, name string, n, sleepMS int) []int64 {
	t.Helper()
	plan := faultinject.TaskPlan{Shape: name, Steps: map[string]faultinject.StepPlan{}}
	for _, s := range []string{"a", "b", "c"} {
		plan.Steps[s] = faultinject.StepPlan{SleepMS: sleepMS}
	}
	ctxJSON, err := json.Marshal(map[string]any{"fi": plan})
	require.NoError(t, err)
	var ids []int64
	for range n {
		task, _, err := c.InitializeTask(context.Background(), &tasker.TaskRequest{Namespace: faultinject.Namespace,
			Name: name, Context: ctxJSON})
		require.NoError(t, err)
		ids = append(ids, task.ID)
	}
	return ids
}

// TestHandlerLimitUnderKills runs three runner processes on one PostgreSQL
// database over tasks of three parallel steps of a handler class limited
// to 3 while runners are SIGKILLed and restarted; afterwards
// faultinject.CheckHandlerLimit must find, in the handler log, no moment
// at which more than 3 attempts of the class ran (an attempt cut off by a
// SIGKILL counts until its process was seen dead). The control runs the
// same work in one process with no limit declared and must be found over
// the limit. It runs with TASKER_FAULTINJECT set and TEST_DATABASE_URL:
//
//	TASKER_FAULTINJECT=short go test -run TestHandlerLimitUnderKills -v ./internal/faultinject
func TestHandlerLimitUnderKills(t *testing.T) {
	if os.Getenv("TASKER_FAULTINJECT") == "" {
		t.Skip("set TASKER_FAULTINJECT to run the handler-limit fault-injection test")
	}
	url := testdb.PostgresURL(t)
	dir := t.TempDir()
	tmplDir := filepath.Join(dir, "templates")
	require.NoError(t, os.Mkdir(tmplDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tmplDir, "handler_probe.yaml"), []byte(handlerProbeYAML("handler_probe", true)), 0o644))
	logPath := filepath.Join(dir, "handler.log")
	bin := filepath.Join(dir, "runner")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/tasker-systems/tasker/internal/faultinject/runner").CombinedOutput()
	require.NoError(t, err, "build runner: %s", out)

	ctx := context.Background()
	c, err := tasker.Open(ctx, tasker.Config{DatabaseURL: url, AutoMigrate: true, TemplatesDir: tmplDir})
	require.NoError(t, err)
	defer c.Close()
	c.RegisterHandler(faultinject.HandlerClass, tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) {
		return nil, nil // never runs: the driver does not Run
	}))
	const tasks = 40
	probes := createHandlerProbes(t, c, "handler_probe", tasks, 80)

	rng := rand.New(rand.NewPCG(19, 2))
	fl := &fleet{t: t, bin: bin, url: url, log: logPath, tmplDir: tmplDir, prefix: "hl-runner", workers: 4}
	start, stop := fl.start, fl.stop
	live := []*runnerProc{start(), start(), start()}
	finished := func(ids []int64) func() bool {
		return func() bool {
			for _, id := range ids {
				d, err := c.Task(ctx, id)
				if err != nil || !d.State.Terminal() {
					return false
				}
			}
			return true
		}
	}
	kills := 0
	for kills < 6 && !finished(probes)() {
		// The choreography's pace, not a wait for a result.
		time.Sleep(500*time.Millisecond + time.Duration(rng.Int64N(int64(time.Second))))
		i := rng.IntN(len(live))
		stop(live[i], syscall.SIGKILL)
		kills++
		live[i] = start()
	}
	require.Eventually(t, finished(probes), 3*time.Minute, 100*time.Millisecond, "every task finishes")
	for _, p := range live {
		stop(p, syscall.SIGTERM)
	}
	complete := 0
	for _, id := range probes {
		if d, err := c.Task(ctx, id); err == nil && d.State == "complete" {
			complete++
		}
	}
	require.Equal(t, tasks, complete, "every probe completes")

	recs, _, err := faultinject.ReadLog(logPath)
	require.NoError(t, err)
	deaths := map[string]time.Time{}
	for _, p := range fl.all {
		deaths[p.owner] = p.down
	}
	starts := 0
	for _, r := range recs {
		if r.Ev == faultinject.RecStart {
			starts++
		}
	}
	viol := faultinject.CheckHandlerLimit(handlerProbeLimit, recs, deaths, nil)
	t.Logf("handler limit: %d tasks, %d attempts started, %d SIGKILLs of %d runner processes; violations = %d",
		len(probes), starts, kills, len(fl.all), len(viol))
	for _, v := range viol {
		t.Error(v)
	}

	// The control: the same work without the declaration, in one process.
	ctlDir := filepath.Join(dir, "control")
	require.NoError(t, os.Mkdir(ctlDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(ctlDir, "handler_control.yaml"), []byte(handlerProbeYAML("handler_control", false)), 0o644))
	ctlLogPath := filepath.Join(dir, "control.log")
	ctlLog, err := faultinject.OpenLog(ctlLogPath)
	require.NoError(t, err)
	defer ctlLog.Close()
	ctl, err := tasker.Open(ctx, faultinject.RunnerConfig(url, ctlDir, "hl-control", false))
	require.NoError(t, err)
	defer ctl.Close()
	ctl.RegisterHandler(faultinject.HandlerClass, &faultinject.Handler{Log: ctlLog, Owner: "hl-control"})
	control := createHandlerProbes(t, ctl, "handler_control", 12, 80)
	rctx, cancel := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- ctl.Run(rctx, 4) }()
	require.Eventually(t, finished(control), 2*time.Minute, 100*time.Millisecond, "every control task finishes")
	cancel()
	require.NoError(t, <-runDone)
	ctlRecs, _, err := faultinject.ReadLog(ctlLogPath)
	require.NoError(t, err)
	controlViol := faultinject.CheckHandlerLimit(handlerProbeLimit, ctlRecs, nil, nil)
	t.Logf("handler limit control (no limit declared): %d violations of limit %d, first: %v", len(controlViol),
		handlerProbeLimit, controlViol[:min(1, len(controlViol))])
	require.NotEmpty(t, controlViol, "the check finds attempts over the limit when nothing enforces it")
}
