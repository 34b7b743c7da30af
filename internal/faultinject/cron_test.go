package faultinject_test

import (
	"context"
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
	"github.com/tasker-systems/tasker/internal/schedule"
	"github.com/tasker-systems/tasker/internal/testdb"
)

const cronProbeYAML = `name: cron_probe
namespace_name: fi
step_templates:
  - name: only
    handler_class: tasker:noop
schedules:
  - name: catch
    cron: "@every 2s"
    missed: catch_up
  - name: skip
    cron: "@every 2s"
`

// TestCronUnderKills runs three runner processes on one PostgreSQL
// database while two @every 2s schedules (catch_up and skip) tick:
// runners are SIGKILLed and restarted one at a time, then all at once with
// the database left without a runner for several ticks. Afterwards
// faultinject.CheckTicks must find no tick with two tasks, no tick lost
// while a runner was up, nothing created late under skip and only the
// latest missed tick under catch_up. It runs with TASKER_FAULTINJECT set
// (any value) and TEST_DATABASE_URL:
//
//	TASKER_FAULTINJECT=short go test -run TestCronUnderKills -v ./internal/faultinject
func TestCronUnderKills(t *testing.T) {
	if os.Getenv("TASKER_FAULTINJECT") == "" {
		t.Skip("set TASKER_FAULTINJECT to run the cron fault-injection test")
	}
	url := testdb.PostgresURL(t)
	dir := t.TempDir()
	tmplDir := filepath.Join(dir, "templates")
	require.NoError(t, os.Mkdir(tmplDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tmplDir, "cron_probe.yaml"), []byte(cronProbeYAML), 0o644))
	logPath := filepath.Join(dir, "handler.log")
	bin := filepath.Join(dir, "runner")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/tasker-systems/tasker/internal/faultinject/runner").CombinedOutput()
	require.NoError(t, err, "build runner: %s", out)

	ctx := context.Background()
	c, err := tasker.Open(ctx, tasker.Config{DatabaseURL: url, AutoMigrate: true, TemplatesDir: tmplDir})
	require.NoError(t, err)
	defer c.Close()

	rng := rand.New(rand.NewPCG(19, 6))
	fl := &fleet{t: t, bin: bin, url: url, log: logPath, tmplDir: tmplDir, prefix: "cron-runner", workers: 2}
	start, stop := fl.start, fl.stop
	sleep := func(min, max time.Duration) { // the choreography's pace, not a wait for a result
		time.Sleep(min + time.Duration(rng.Int64N(int64(max-min))))
	}
	live := []*runnerProc{start(), start(), start()}
	defer func() {
		for _, p := range live {
			stop(p, syscall.SIGKILL)
		}
	}()
	kills := 0
	rolling := func(n int) {
		for range n {
			sleep(1500*time.Millisecond, 3*time.Second)
			i := rng.IntN(len(live))
			stop(live[i], syscall.SIGKILL)
			kills++
			live[i] = start()
		}
	}
	rolling(6)
	// Every runner down for three to four ticks.
	for _, p := range live {
		stop(p, syscall.SIGKILL)
		kills++
	}
	outage := time.Now()
	sleep(6*time.Second, 7*time.Second)
	// Restart 1.4 s after a tick (grace 1 s): that tick was missed; catch_up
	// creates it, skip does not.
	now := time.Now()
	restart := now.Truncate(2 * time.Second).Add(1400 * time.Millisecond)
	if restart.Before(now) {
		restart = restart.Add(2 * time.Second)
	}
	time.Sleep(time.Until(restart))
	t.Logf("no runner up for %s", time.Since(outage).Round(time.Millisecond))
	live = []*runnerProc{start(), start(), start()}
	missedTick := restart.Truncate(2 * time.Second).UTC()
	rolling(3)
	sleep(4*time.Second, 5*time.Second)
	for _, p := range live {
		stop(p, syscall.SIGTERM)
	}
	live = nil

	recs, _, err := faultinject.ReadLog(logPath)
	require.NoError(t, err)
	ups := map[string]time.Time{}
	for _, r := range recs {
		if r.Ev == faultinject.RecUp {
			ups[r.Owner] = r.Time()
		}
	}
	var spans []faultinject.RunnerSpan
	for _, p := range fl.all {
		if up, ok := ups[p.owner]; ok { // killed before it opened: never up
			spans = append(spans, faultinject.RunnerSpan{Owner: p.owner, Up: up, Down: p.down})
		}
	}
	tasks, err := c.ListTasks(ctx, &tasker.TaskFilter{Namespace: "fi", Name: "cron_probe", Limit: 10000})
	require.NoError(t, err)
	bySchedule := map[string][]faultinject.ScheduledTask{}
	for _, task := range tasks {
		name, tick, ok := schedule.ParseTags(task.Tags)
		require.True(t, ok, "task %d: %v", task.ID, task.Tags)
		bySchedule[name] = append(bySchedule[name], faultinject.ScheduledTask{TaskID: task.ID, Tick: tick})
	}
	if testing.Verbose() {
		for _, sp := range spans {
			t.Logf("runner %s up %s down %s", sp.Owner, sp.Up.UTC().Format("15:04:05.000"), sp.Down.UTC().Format("15:04:05.000"))
		}
	}
	slack := faultinject.CronSlack{Startup: 3 * time.Second, Create: 3 * time.Second}
	for _, spec := range []faultinject.CronSpec{
		{Name: "catch", Interval: 2 * time.Second, CatchUp: true},
		{Name: "skip", Interval: 2 * time.Second},
	} {
		viol := faultinject.CheckTicks(spec, bySchedule[spec.Name], spans, slack)
		if testing.Verbose() {
			for _, st := range bySchedule[spec.Name] {
				t.Logf("%s tick %s task %d", spec.Name, st.Tick.Format("15:04:05"), st.TaskID)
			}
		}
		t.Logf("%s: %d tasks, %d runner processes up, %d SIGKILLs; violations = %d",
			spec.Name, len(bySchedule[spec.Name]), len(spans), kills, len(viol))
		for _, v := range viol {
			t.Error(v)
		}
		created := false
		for _, st := range bySchedule[spec.Name] {
			created = created || st.Tick.Equal(missedTick)
		}
		if spec.CatchUp {
			// Created unless the first scheduler started only after the
			// next tick (a very slow start): logged, not asserted.
			t.Logf("catch: the tick missed before the restart (%s) was caught up: %v", missedTick.Format("15:04:05"), created)
		} else {
			require.False(t, created, "skip created the tick missed before the restart (%s)", missedTick.Format("15:04:05"))
		}
	}
}
