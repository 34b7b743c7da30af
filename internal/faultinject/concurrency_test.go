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

// concProbeYAML limits its tasks to 2 running per key; concControlYAML is
// the same work with no limit declared (enforcement off), checked against
// the same limit to show the check catches what enforcement prevents.
const (
	concProbeYAML = `name: conc_probe
namespace_name: fi
concurrency:
  key: "k-${context.k}"
  limit: 2
step_templates:
  - {name: only, handler_class: "tasker:sleep", handler_config: {milliseconds: 150}, default_retry_limit: 20}
`
	concControlYAML = `name: conc_control
namespace_name: fi
step_templates:
  - {name: only, handler_class: "tasker:sleep", handler_config: {milliseconds: 150}, default_retry_limit: 20}
`
)

// TestConcurrencyUnderKills runs three runner processes on one PostgreSQL
// database over tasks with concurrency keys (3 keys, limit 2) while
// runners are SIGKILLed and restarted; afterwards
// faultinject.CheckConcurrency must find, from the transitions audit, no
// moment at which more than 2 tasks of a key were running, while the same
// work without a declared limit (the control) must be found over it. It
// runs with TASKER_FAULTINJECT set (any value) and TEST_DATABASE_URL:
//
//	TASKER_FAULTINJECT=short go test -run TestConcurrencyUnderKills -v ./internal/faultinject
func TestConcurrencyUnderKills(t *testing.T) {
	if os.Getenv("TASKER_FAULTINJECT") == "" {
		t.Skip("set TASKER_FAULTINJECT to run the concurrency-key fault-injection test")
	}
	url := testdb.PostgresURL(t)
	dir := t.TempDir()
	tmplDir := filepath.Join(dir, "templates")
	require.NoError(t, os.Mkdir(tmplDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tmplDir, "conc_probe.yaml"), []byte(concProbeYAML), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(tmplDir, "conc_control.yaml"), []byte(concControlYAML), 0o644))
	logPath := filepath.Join(dir, "handler.log")
	bin := filepath.Join(dir, "runner")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/tasker-systems/tasker/internal/faultinject/runner").CombinedOutput()
	require.NoError(t, err, "build runner: %s", out)

	ctx := context.Background()
	c, err := tasker.Open(ctx, tasker.Config{DatabaseURL: url, AutoMigrate: true, TemplatesDir: tmplDir})
	require.NoError(t, err)
	defer c.Close()

	const keys, perKey, controls = 3, 20, 30
	keyOf := map[int64]string{}
	var probes []int64
	for i := range keys * perKey {
		k := i % keys
		task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "fi", Name: "conc_probe",
			Context: json.RawMessage(fmt.Sprintf(`{"k": %d}`, k))})
		require.NoError(t, err)
		keyOf[task.ID] = fmt.Sprintf("k-%d", k)
		probes = append(probes, task.ID)
	}
	var control []int64
	for range controls {
		task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "fi", Name: "conc_control"})
		require.NoError(t, err)
		keyOf[task.ID] = "control"
		control = append(control, task.ID)
	}

	rng := rand.New(rand.NewPCG(19, 1))
	fl := &fleet{t: t, bin: bin, url: url, log: logPath, tmplDir: tmplDir, prefix: "conc-runner", workers: 4}
	start, stop := fl.start, fl.stop
	live := []*runnerProc{start(), start(), start()}
	defer func() {
		for _, p := range live {
			stop(p, syscall.SIGTERM)
		}
	}()
	finished := func() bool {
		for id := range keyOf {
			d, err := c.Task(ctx, id)
			if err != nil || !d.State.Terminal() {
				return false
			}
		}
		return true
	}
	kills := 0
	for kills < 6 && !finished() {
		// The choreography's pace, not a wait for a result.
		time.Sleep(500*time.Millisecond + time.Duration(rng.Int64N(int64(time.Second))))
		i := rng.IntN(len(live))
		stop(live[i], syscall.SIGKILL)
		kills++
		live[i] = start()
	}
	require.Eventually(t, finished, 3*time.Minute, 100*time.Millisecond, "every task finishes")

	read := func(ids []int64) []faultinject.KeyedTask {
		var out []faultinject.KeyedTask
		for _, id := range ids {
			trs, _, err := c.Transitions(ctx, id)
			require.NoError(t, err)
			kt := faultinject.KeyedTask{TaskID: id, Key: keyOf[id]}
			for _, tr := range trs {
				kt.Transitions = append(kt.Transitions, faultinject.StateChange{To: tr.ToState, At: tr.CreatedAt})
			}
			out = append(out, kt)
		}
		return out
	}
	limits := map[string]int{"control": 2}
	for k := range keys {
		limits[fmt.Sprintf("k-%d", k)] = 2
	}
	viol := faultinject.CheckConcurrency(limits, read(probes))
	t.Logf("%d keyed tasks, %d SIGKILLs of %d runner processes; violations = %d", len(probes), kills, len(fl.all), len(viol))
	for _, v := range viol {
		t.Error(v)
	}
	controlViol := faultinject.CheckConcurrency(limits, read(control))
	t.Logf("control (no limit declared): %d violations of limit 2, first: %v", len(controlViol), controlViol[:min(1, len(controlViol))])
	require.NotEmpty(t, controlViol, "the check finds tasks over the limit when nothing enforces it")
}
