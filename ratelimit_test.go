package tasker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// rateLimitedTemplate is a one-step template whose step runs under the
// limit shared (rate per second, burst).
func rateLimitedTemplate(name string, rate float64, burst int, handler string) string {
	return fmt.Sprintf(`name: %s
namespace_name: rl
rate_limits:
  shared: {per_second: %g, burst: %d}
step_templates:
  - name: call
    handler_class: %s
    rate_limit: shared
    default_retry_limit: 5
`, name, rate, burst, handler)
}

// checkBucket fails unless the start times never exceed what a bucket of
// burst tokens refilled at rate a second allows: in every window between
// two starts, at most burst + rate x window (+ slack for the time between
// a token and the handler's first instruction).
func checkBucket(t *testing.T, starts []time.Time, rate float64, burst int, slack time.Duration) {
	t.Helper()
	slices.SortFunc(starts, func(a, b time.Time) int { return a.Compare(b) })
	for i := range starts {
		for j := i; j < len(starts); j++ {
			window := starts[j].Sub(starts[i]) + slack
			if allowed := float64(burst) + rate*window.Seconds(); float64(j-i+1) > allowed {
				t.Fatalf("%d starts within %s: a bucket of %d at %g/s allows %.2f", j-i+1, starts[j].Sub(starts[i]), burst,
					rate, allowed)
			}
		}
	}
}

// Steps of many tasks share one limit: their handlers start no faster than
// the bucket allows, a step that found no token is throttled without
// counting an attempt, and every task completes.
func TestRateLimitSharedAcrossTasks(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		var mu sync.Mutex
		var starts []time.Time
		c.RegisterHandler("Limited", tasker.StepHandlerFunc(func(context.Context, *tasker.StepContext) (any, error) {
			mu.Lock()
			starts = append(starts, time.Now())
			mu.Unlock()
			return nil, nil
		}))
		const rate, burst, tasks = 3.0, 2, 9
		_, err := c.AddTemplate("rl.yml", []byte(rateLimitedTemplate("shared_tasks", rate, burst, "Limited")))
		require.NoError(t, err)
		ctx := context.Background()
		var ids []int64
		for range tasks {
			task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "rl", Name: "shared_tasks"})
			require.NoError(t, err)
			ids = append(ids, task.ID)
		}
		rctx, stop := context.WithCancel(ctx)
		runDone := make(chan error, 1)
		go func() { runDone <- c.Run(rctx, 6) }()
		defer func() { stop(); require.NoError(t, <-runDone) }()

		throttled := 0
		for _, id := range ids {
			d := waitTaskState(t, c, id, "complete")
			require.Equal(t, 1, d.Steps[0].Attempts, "a throttled attempt is given back")
			_, trs, err := c.Transitions(ctx, id)
			require.NoError(t, err)
			for _, tr := range trs {
				if tr.Event == "throttle" {
					throttled++
					require.Contains(t, tr.Reason, "rate limit shared: no token until")
					require.Equal(t, "waiting_for_retry", tr.ToState)
				}
			}
		}
		mu.Lock()
		defer mu.Unlock()
		require.Len(t, starts, tasks)
		// The slack covers the time from a token's grant to its handler's first
		// instruction (goroutine scheduling under -race on a busy machine).
		checkBucket(t, starts, rate, burst, 300*time.Millisecond)
		require.Positive(t, throttled, "9 steps at once against a burst of 2: some waited for a token")
		t.Logf("%d tasks, %d throttles, starts over %s", tasks, throttled, starts[len(starts)-1].Sub(starts[0]))
	})
}

// retryAfterServer answers 429 with Retry-After: 2 to its first request
// and 200 afterwards, and records when each request came.
type retryAfterServer struct {
	*httptest.Server
	mu    sync.Mutex
	times []time.Time
}

func newRetryAfterServer(t *testing.T) *retryAfterServer {
	s := &retryAfterServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.times = append(s.times, time.Now())
		first := len(s.times) == 1
		s.mu.Unlock()
		if first {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *retryAfterServer) requests() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.times)
}

// httpLimitedTemplate calls url with tasker:http under a generous limit,
// so that only a Retry-After holds its steps back.
func httpLimitedTemplate(url string) string {
	return `name: call_api
namespace_name: rl
rate_limits:
  api: {per_second: 100, burst: 10}
step_templates:
  - name: call
    handler_class: "tasker:http"
    rate_limit: api
    default_retry_limit: 5
    handler_config: {url: "` + url + `/x"}
`
}

func openHTTPClient(t *testing.T, url, owner string) *tasker.Client {
	t.Helper()
	c, err := tasker.Open(context.Background(), tasker.Config{DatabaseURL: url, AutoMigrate: true,
		TemplatesDir: t.TempDir(), Backoff: fastBackoff(), PollInterval: 20 * time.Millisecond, Owner: owner,
		HTTPAllowedHosts: []string{"127.0.0.1"}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// runClient runs c's queue until the test ends.
func runClient(t *testing.T, c *tasker.Client) {
	t.Helper()
	rctx, stop := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- c.Run(rctx, 4) }()
	t.Cleanup(func() { stop(); require.NoError(t, <-runDone) })
}

// stepEvent returns the task's first transition of event, nil when none.
func stepEvent(t *testing.T, c *tasker.Client, taskID int64, event string) *tasker.Transition {
	t.Helper()
	_, trs, err := c.Transitions(context.Background(), taskID)
	require.NoError(t, err)
	for _, tr := range trs {
		if tr.Event == event {
			return tr
		}
	}
	return nil
}

// waitStepEvent waits until the task's step has a transition of event.
func waitStepEvent(t *testing.T, c *tasker.Client, taskID int64, event string) *tasker.Transition {
	t.Helper()
	var found *tasker.Transition
	require.Eventually(t, func() bool {
		found = stepEvent(t, c, taskID, event)
		return found != nil
	}, time.Minute, 10*time.Millisecond, "task %d: no %s transition", taskID, event)
	return found
}

// A 429 with Retry-After on one task's step blocks the limit for every
// task: a second task's step created after the failure does not call the
// server before the Retry-After has passed (the step that was told waits
// too), and explain says why.
func TestRateLimitRetryAfterBlocksOtherTasks(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		srv := newRetryAfterServer(t)
		c := openHTTPClient(t, url, "")
		_, err := c.AddTemplate("api.yml", []byte(httpLimitedTemplate(srv.URL)))
		require.NoError(t, err)
		runClient(t, c)
		ctx := context.Background()
		a, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "rl", Name: "call_api"})
		require.NoError(t, err)
		waitStepEvent(t, c, a.ID, "fail_retryable")
		b, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "rl", Name: "call_api"})
		require.NoError(t, err)
		// b is throttled, unless a loaded machine got to it only after the
		// 2 s block (then the request times below are the whole check).
		var throttle *tasker.Transition
		require.Eventually(t, func() bool {
			throttle = stepEvent(t, c, b.ID, "throttle")
			d, err := c.Task(ctx, b.ID)
			require.NoError(t, err)
			return throttle != nil || d.State == "complete"
		}, time.Minute, 10*time.Millisecond)
		if throttle != nil {
			require.Contains(t, throttle.Reason, "rate limit api blocked by a server's Retry-After until")
			rs, err := c.Explain(ctx, b.ID)
			require.NoError(t, err)
			if d, _ := c.Task(ctx, b.ID); d.Steps[0].State == "waiting_for_retry" { // not yet past the block
				require.Contains(t, rs[0].Reason, "waiting: rate limit api until")
			}
		}
		waitTaskState(t, c, a.ID, "complete")
		waitTaskState(t, c, b.ID, "complete")
		reqs := srv.requests()
		// b claimed within the block must have been throttled.
		if claim := stepEvent(t, c, b.ID, "claim"); claim.CreatedAt.Before(reqs[0].Add(1500 * time.Millisecond)) {
			require.NotNil(t, throttle, "b, claimed %s after the 429, was throttled", claim.CreatedAt.Sub(reqs[0]))
		}
		require.Len(t, reqs, 3, "429 to a, then a's retry and b's only attempt")
		for _, r := range reqs[1:] {
			require.GreaterOrEqual(t, r.Sub(reqs[0]), 2*time.Second-50*time.Millisecond,
				"a request %s after the 429 that asked for 2 s", r.Sub(reqs[0]))
		}
		db, err := c.Task(ctx, b.ID)
		require.NoError(t, err)
		require.Equal(t, 1, db.Steps[0].Attempts, "b's throttles did not count")
	})
}

// The block lives in the database: a second engine on the same PostgreSQL,
// started after the first recorded the 429, holds its steps back too.
func TestRateLimitRetryAfterAcrossEngines(t *testing.T) {
	t.Parallel()
	url := testdb.PostgresURL(t)
	srv := newRetryAfterServer(t)
	one := openHTTPClient(t, url, "engine-one")
	_, err := one.AddTemplate("api.yml", []byte(httpLimitedTemplate(srv.URL)))
	require.NoError(t, err)
	ctx := context.Background()
	a, _, err := one.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "rl", Name: "call_api"})
	require.NoError(t, err)
	res, err := one.Handle(ctx, a.ID) // one pass: the 429, then the task waits
	require.NoError(t, err)
	require.Equal(t, tasker.TaskState("waiting_for_retry"), res.Status)
	require.NoError(t, one.Close())

	two := openHTTPClient(t, url, "engine-two")
	_, err = two.AddTemplate("api.yml", []byte(httpLimitedTemplate(srv.URL)))
	require.NoError(t, err)
	b, _, err := two.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "rl", Name: "call_api"})
	require.NoError(t, err)
	runClient(t, two)
	waitTaskState(t, two, a.ID, "complete")
	waitTaskState(t, two, b.ID, "complete")
	reqs := srv.requests()
	require.Len(t, reqs, 3)
	for _, r := range reqs[1:] {
		require.GreaterOrEqual(t, r.Sub(reqs[0]), 2*time.Second-50*time.Millisecond)
	}
	_, trs, err := two.Transitions(ctx, b.ID)
	require.NoError(t, err)
	var events []string
	for _, tr := range trs {
		events = append(events, tr.Event+" by "+tr.Actor)
	}
	// Engine two can only be held back if it got to b before the block
	// ended (a loaded machine may take longer than the 2 s to get there:
	// then the request times above are the whole check).
	if claim := stepEvent(t, two, b.ID, "claim"); claim.CreatedAt.Before(reqs[0].Add(1500 * time.Millisecond)) {
		require.Contains(t, strings.Join(events, ", "), "throttle by engine-two", "b waited for the block engine one set")
	}
}

// The pull API (Ruby workers) takes tokens before handing steps out: a
// claim gets only the steps its limit has tokens for, the others wait
// without an attempt counted; a reported retry_after_seconds blocks the
// limit for every task. Explain says why each step waits.
func TestRateLimitPullAPI(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openWorkerClient(t, url)
		_, err := c.AddTemplate("fan.yml", []byte(`name: fan
namespace_name: rl
rate_limits:
  slow: {per_minute: 1, burst: 2}
step_templates:
  - {name: a, handler_class: RubyStep, rate_limit: slow}
  - {name: b, handler_class: RubyStep, rate_limit: slow}
  - {name: c, handler_class: RubyStep, rate_limit: slow}
  - {name: free, handler_class: RubyStep}
`))
		require.NoError(t, err)
		ctx := context.Background()
		w := c.Worker()
		task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "rl", Name: "fan"})
		require.NoError(t, err)
		claim, err := w.ClaimSteps(ctx, tasker.ClaimParams{TaskID: task.ID, Owner: "ruby-1"})
		require.NoError(t, err)
		var names []string
		for _, s := range claim.Steps {
			names = append(names, s.Name)
		}
		require.ElementsMatch(t, []string{"a", "b", "free"}, names, "a burst of 2 for three limited steps")
		d, err := c.Task(ctx, task.ID)
		require.NoError(t, err)
		for _, st := range d.Steps {
			if st.Name == "c" {
				require.Equal(t, tasker.StepState("waiting_for_retry"), st.State)
				require.Equal(t, 0, st.Attempts)
				require.NotNil(t, st.NextRetryAt)
				require.WithinDuration(t, time.Now().Add(time.Minute), *st.NextRetryAt, 10*time.Second)
			}
		}
		rs, err := c.Explain(ctx, task.ID)
		require.NoError(t, err)
		for _, r := range rs {
			if r.Name == "c" {
				require.Contains(t, r.Reason, "waiting: rate limit slow (no token until")
			}
		}

		// A Retry-After reported by the worker blocks the limit.
		var results []tasker.ExternalResult
		for _, s := range claim.Steps {
			r := tasker.ExternalResult{StepID: s.StepID, Attempt: s.Attempt, Success: true}
			if s.Name == "a" {
				r = tasker.ExternalResult{StepID: s.StepID, Attempt: s.Attempt,
					Error: &tasker.ExternalError{Message: "429", RetryAfterSeconds: 30}}
			}
			results = append(results, r)
		}
		_, err = w.ReportResults(ctx, tasker.ReportParams{TaskID: task.ID, Owner: "ruby-1", Results: results})
		require.NoError(t, err)
		other, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "rl", Name: "fan"})
		require.NoError(t, err)
		claim, err = w.ClaimSteps(ctx, tasker.ClaimParams{TaskID: other.ID, Owner: "ruby-2"})
		require.NoError(t, err)
		require.Len(t, claim.Steps, 1, "only the unlimited step: the limit is blocked")
		require.Equal(t, "free", claim.Steps[0].Name)
		rs, err = c.Explain(ctx, other.ID)
		require.NoError(t, err)
		for _, r := range rs {
			if r.Name != "free" {
				require.Contains(t, r.Reason, "waiting: rate limit slow until", r.Name)
				require.Contains(t, r.Reason, "a server's Retry-After")
			}
		}
	})
}

// The items of a fan-out step run under their step's rate limit: a list of
// eight expanded at once still starts its handlers no faster than the
// bucket allows, and the collecting step gets every result in order.
func TestRateLimitFanOutItems(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c := openClient(t, url)
		var mu sync.Mutex
		var starts []time.Time
		c.RegisterHandler("Charge", tasker.StepHandlerFunc(func(_ context.Context, sc *tasker.StepContext) (any, error) {
			mu.Lock()
			starts = append(starts, time.Now())
			mu.Unlock()
			var in struct {
				Item string `json:"item"`
			}
			if err := json.Unmarshal(sc.Inputs, &in); err != nil {
				return nil, err
			}
			return map[string]any{"charged": in.Item}, nil
		}))
		const rate, burst, items = 4.0, 2, 8
		_, err := c.AddTemplate("rlfan.yml", []byte(fmt.Sprintf(`name: fan_charges
namespace_name: rl
max_parallel_steps: 16
rate_limits:
  gateway: {per_second: %g, burst: %d}
step_templates:
  - name: list
    handler_class: tasker:noop
    handler_config: {result: {cards: [c0, c1, c2, c3, c4, c5, c6, c7]}}
  - name: charge
    handler_class: Charge
    depends_on_steps: [list]
    rate_limit: gateway
    fan_out: {over: list, path: cards}
    default_retry_limit: 5
  - name: total
    handler_class: tasker:noop
    depends_on_steps: [charge]
`, rate, burst)))
		require.NoError(t, err)
		ctx := context.Background()
		task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "rl", Name: "fan_charges"})
		require.NoError(t, err)
		runClient(t, c)
		d := waitTaskState(t, c, task.ID, "complete")
		require.Len(t, d.Steps, 3+items, "list, the placeholder, %d items and total", items)
		_, trs, err := c.Transitions(ctx, task.ID)
		require.NoError(t, err)
		throttled := 0
		for _, tr := range trs {
			if tr.Event == "throttle" {
				throttled++
				require.Contains(t, tr.Reason, "rate limit gateway")
			}
		}
		mu.Lock()
		defer mu.Unlock()
		require.Len(t, starts, items)
		checkBucket(t, starts, rate, burst, 300*time.Millisecond)
		require.Positive(t, throttled, "8 items at once against a burst of 2: some waited for a token")
	})
}
