package tasker_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// handlerLimitedTemplate is a template of three parallel steps of class
// Hold, which handler_limits limits to limit (0: no declaration).
func handlerLimitedTemplate(name string, limit int) string {
	decl := ""
	if limit > 0 {
		decl = fmt.Sprintf("handler_limits:\n  Hold: %d\n", limit)
	}
	return fmt.Sprintf(`name: %s
namespace_name: hl
%sstep_templates:
  - {name: a, handler_class: Hold}
  - {name: b, handler_class: Hold}
  - {name: c, handler_class: Hold}
`, name, decl)
}

// peakCounter is a handler that records how many of its calls overlap.
type peakCounter struct {
	mu                  sync.Mutex
	running, peak, done int
	// hold, when set, is waited for by every call.
	hold chan struct{}
}

func (p *peakCounter) handler() tasker.StepHandler {
	return tasker.StepHandlerFunc(func(ctx context.Context, sc *tasker.StepContext) (any, error) {
		p.mu.Lock()
		p.running++
		p.peak = max(p.peak, p.running)
		p.mu.Unlock()
		if p.hold != nil {
			<-p.hold
		} else {
			time.Sleep(15 * time.Millisecond) // simulated work, long enough for overlaps
		}
		p.mu.Lock()
		p.running--
		p.done++
		p.mu.Unlock()
		return "ok", nil
	})
}

func (p *peakCounter) now() (running, peak, done int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.running, p.peak, p.done
}

// Three engines on one PostgreSQL database run tasks of three parallel
// steps of a class limited to 2: never more than 2 run at once, the limit
// is reached, every task completes, and a refused attempt is not counted.
func TestHandlerLimitAcrossEngines(t *testing.T) {
	t.Parallel()
	url := testdb.PostgresURL(t)
	pc := &peakCounter{}
	clients := make([]*tasker.Client, 3)
	for i := range clients {
		clients[i] = openClient(t, url)
		clients[i].RegisterHandler("Hold", pc.handler())
		_, err := clients[i].AddTemplate("h.yml", []byte(handlerLimitedTemplate("three", 2)))
		require.NoError(t, err)
	}
	const tasks = 12
	ids := make([]int64, tasks)
	ctx := context.Background()
	for i := range ids {
		task, _, err := clients[i%len(clients)].InitializeTask(ctx, &tasker.TaskRequest{Namespace: "hl", Name: "three"})
		require.NoError(t, err)
		ids[i] = task.ID
	}
	for _, c := range clients {
		startRun(t, c, 4)
	}
	throttled := 0
	for _, id := range ids {
		d := waitTaskState(t, clients[0], id, "complete")
		for _, st := range d.Steps {
			require.Equal(t, 1, st.Attempts, "a refused attempt is given back")
		}
		_, trs, err := clients[0].Transitions(ctx, id)
		require.NoError(t, err)
		for _, tr := range trs {
			if tr.Event == "throttle" {
				throttled++
				require.Contains(t, tr.Reason, "handler class Hold at limit 2 (")
			}
		}
	}
	_, peak, done := pc.now()
	require.Equal(t, 3*tasks, done)
	require.LessOrEqual(t, peak, 2, "at most the limit ran at once")
	require.Equal(t, 2, peak, "the limit, not fewer, ran at once")
	require.Positive(t, throttled)
	t.Logf("%d steps, %d throttles", done, throttled)
}

// On both databases: the limit holds in one engine; explain says why a
// step waits; a freed slot wakes the waiting step at once (long before the
// recheck); a template limiting the class differently is refused.
func TestHandlerLimitWaitsAndWakes(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		pc := &peakCounter{hold: make(chan struct{})}
		c.RegisterHandler("Hold", pc.handler())
		_, err := c.AddTemplate("h.yml", []byte(handlerLimitedTemplate("three", 2)))
		require.NoError(t, err)
		_, err = c.AddTemplate("other.yml", []byte(handlerLimitedTemplate("other", 3)))
		require.ErrorContains(t, err, `handler class "Hold" is limited to 3 here`)
		require.ErrorContains(t, err, "but to 2 in hl/three@0.1.0 (h.yml)")
		// A template that does not declare the limit still runs under it.
		_, err = c.AddTemplate("plain.yml", []byte(handlerLimitedTemplate("plain", 0)))
		require.NoError(t, err)

		ctx := context.Background()
		first, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "hl", Name: "three"})
		require.NoError(t, err)
		second, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "hl", Name: "plain"})
		require.NoError(t, err)
		startRun(t, c, 4)
		require.Eventually(t, func() bool { running, _, _ := pc.now(); return running == 2 }, time.Minute, 5*time.Millisecond)
		// The other steps wait for a slot, and explain says so.
		waitStepEvent(t, c, second.ID, "throttle")
		require.Eventually(t, func() bool {
			rs, err := c.Explain(ctx, second.ID)
			require.NoError(t, err)
			for _, r := range rs {
				if r.Reason == "waiting: handler class Hold at limit 2 (2 running)" {
					return true
				}
			}
			return false
		}, time.Minute, 10*time.Millisecond)
		_, peak, _ := pc.now()
		require.Equal(t, 2, peak)

		// Each release frees a slot that a waiting step takes at once.
		for range 6 {
			pc.hold <- struct{}{}
		}
		waitTaskState(t, c, first.ID, "complete")
		waitTaskState(t, c, second.ID, "complete")
		_, peak, done := pc.now()
		require.Equal(t, 6, done)
		require.Equal(t, 2, peak)
	})
}

// The pull API (Ruby workers) honours the limit: a claim hands out only the
// steps with a slot; the others wait, and explain says why; a reported
// result frees the slot and the waiting step can be claimed at once.
func TestHandlerLimitPullAPI(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openWorkerClient(t, url)
		_, err := c.AddTemplate("pull.yml", []byte(`name: pull
namespace_name: hl
handler_limits:
  RubyCharge: 1
step_templates:
  - {name: a, handler_class: RubyCharge}
  - {name: b, handler_class: RubyCharge}
  - {name: free, handler_class: RubyOther}
`))
		require.NoError(t, err)
		ctx := context.Background()
		w := c.Worker()
		task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "hl", Name: "pull"})
		require.NoError(t, err)
		claim, err := w.ClaimSteps(ctx, tasker.ClaimParams{TaskID: task.ID, Owner: "ruby-1"})
		require.NoError(t, err)
		var names []string
		for _, s := range claim.Steps {
			names = append(names, s.Name)
		}
		require.Len(t, names, 2, "one limited step and the free one: %v", names)
		require.Contains(t, names, "free")
		rs, err := c.Explain(ctx, task.ID)
		require.NoError(t, err)
		waiting := ""
		for _, r := range rs {
			if r.Reason == "waiting: handler class RubyCharge at limit 1 (1 running)" {
				waiting = r.Name
			}
		}
		require.NotEmpty(t, waiting, "explain: %v", rs)
		var results []tasker.ExternalResult
		for _, s := range claim.Steps {
			results = append(results, tasker.ExternalResult{StepID: s.StepID, Attempt: s.Attempt, Success: true})
		}
		_, err = w.ReportResults(ctx, tasker.ReportParams{TaskID: task.ID, Owner: "ruby-1", Results: results})
		require.NoError(t, err)
		// The freed slot made the waiting step due now, not after the recheck.
		claim, err = w.ClaimSteps(ctx, tasker.ClaimParams{TaskID: task.ID, Owner: "ruby-1"})
		require.NoError(t, err)
		require.Len(t, claim.Steps, 1)
		require.Equal(t, waiting, claim.Steps[0].Name)
		require.Equal(t, 1, claim.Steps[0].Attempt, "the refused attempt was given back")
	})
}

// Config.HandlerLimits limits a class from Go; a template that limits it
// differently is refused, naming the configuration.
func TestHandlerLimitFromConfig(t *testing.T) {
	t.Parallel()
	c, err := tasker.Open(context.Background(), tasker.Config{DatabaseURL: "sqlite:" + t.TempDir() + "/t.db",
		AutoMigrate: true, TemplatesDir: t.TempDir(), HandlerLimits: map[string]int{"Hold": 1}})
	require.NoError(t, err)
	defer c.Close()
	_, err = c.AddTemplate("h.yml", []byte(handlerLimitedTemplate("three", 2)))
	require.ErrorContains(t, err, `handler class "Hold" is limited to 2 here (hl/three@0.1.0 (h.yml)) but to 1 in engine Config.HandlerLimits`)
	_, err = c.AddTemplate("h.yml", []byte(handlerLimitedTemplate("one", 1)))
	require.NoError(t, err)
}
