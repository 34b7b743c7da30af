package tasker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/testdb"
)

func fastBackoff() tasker.BackoffConfig {
	return tasker.BackoffConfig{Base: 5 * time.Millisecond, Max: 50 * time.Millisecond, Min: time.Millisecond,
		Multiplier: 2, Jitter: 0.1, MaxServerDelay: 10 * time.Second, PriorityStep: 0.25}
}

func openClient(t *testing.T, url string) *tasker.Client {
	t.Helper()
	c, err := tasker.Open(context.Background(), tasker.Config{DatabaseURL: url, AutoMigrate: true,
		TemplatesDir: t.TempDir(), Backoff: fastBackoff(), PollInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// behaviour is read from each step's handler_config by the recording handler.
type behaviour struct {
	FailTimes  int  `json:"fail_times"`
	Permanent  bool `json:"permanent"`
	RetryAfter int  `json:"retry_after"`
	Always     bool `json:"always"`
	SleepMS    int  `json:"sleep_ms"`
}

type attempt struct {
	taskID     int64
	step       string
	attempt    int
	start, end time.Time
	ok         bool
}

// recorder is a step handler that logs every attempt with its timing.
type recorder struct {
	mu       sync.Mutex
	attempts []attempt
	running  map[string]bool
	overlap  []string
}

func (r *recorder) Handle(ctx context.Context, sc *tasker.StepContext) (any, error) {
	var b behaviour
	raw, _ := json.Marshal(sc.HandlerConfig)
	_ = json.Unmarshal(raw, &b)
	r.mu.Lock()
	if r.running == nil {
		r.running = map[string]bool{}
	}
	key := fmt.Sprintf("%d/%s", sc.TaskID, sc.StepName)
	if r.running[key] {
		r.overlap = append(r.overlap, key)
	}
	r.running[key] = true
	r.mu.Unlock()
	start := time.Now()
	if b.SleepMS > 0 {
		time.Sleep(time.Duration(b.SleepMS) * time.Millisecond)
	}
	var err error
	switch {
	case b.Always || sc.Attempt <= b.FailTimes:
		err = fmt.Errorf("planned failure %d of %s", sc.Attempt, sc.StepName)
		if b.Permanent {
			err = tasker.Permanent(err)
		} else if b.RetryAfter > 0 {
			err = tasker.Retryable(err, time.Duration(b.RetryAfter)*time.Second)
		}
	}
	end := time.Now()
	r.mu.Lock()
	r.running[key] = false
	r.attempts = append(r.attempts, attempt{taskID: sc.TaskID, step: sc.StepName, attempt: sc.Attempt, start: start, end: end, ok: err == nil})
	r.mu.Unlock()
	if err != nil {
		return nil, err
	}
	parents := make([]string, 0, len(sc.DependencyResults))
	for p := range sc.DependencyResults {
		parents = append(parents, p)
	}
	slices.Sort(parents)
	return map[string]any{"step": sc.StepName, "attempt": sc.Attempt, "parents": parents}, nil
}

// checkOrder asserts that no step attempt started before each parent's
// successful attempt ended, and that no step ran twice at once.
func (r *recorder) checkOrder(t *testing.T, taskID int64, parents map[string][]string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.Empty(t, r.overlap, "attempts of one step overlapped")
	done := map[string]time.Time{}
	var mine []attempt
	for _, a := range r.attempts {
		if a.taskID != taskID {
			continue
		}
		mine = append(mine, a)
		if a.ok {
			done[a.step] = a.end
		}
	}
	require.NotEmpty(t, mine)
	for _, a := range mine {
		for _, p := range parents[a.step] {
			end, ok := done[p]
			require.True(t, ok, "step %s ran but parent %s never succeeded", a.step, p)
			require.False(t, a.start.Before(end), "step %s started %s before parent %s finished", a.step, a.start, p)
		}
	}
}

// shape is a DAG: step name -> parents, in topological order.
type shape struct {
	name  string
	order []string
	deps  map[string][]string
}

func newShape(name string, edges ...string) shape {
	s := shape{name: name, deps: map[string][]string{}}
	for _, e := range edges {
		step, parents, _ := strings.Cut(e, "<")
		s.order = append(s.order, step)
		if parents != "" {
			s.deps[step] = strings.Split(parents, ",")
		}
	}
	return s
}

// ancestors returns every step that step depends on, directly or not.
func (s shape) ancestors(step string) map[string]bool {
	out := map[string]bool{}
	var walk func(string)
	walk = func(n string) {
		for _, p := range s.deps[n] {
			if !out[p] {
				out[p] = true
				walk(p)
			}
		}
	}
	walk(step)
	return out
}

func randomShape(n int, seed uint64) shape {
	rng := rand.New(rand.NewPCG(seed, seed))
	var edges []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("s%03d", i)
		var ps []string
		if i > 0 {
			for k := rng.IntN(4); k > 0; k-- {
				p := fmt.Sprintf("s%03d", rng.IntN(i))
				if !slices.Contains(ps, p) {
					ps = append(ps, p)
				}
			}
		}
		edges = append(edges, name+"<"+strings.Join(ps, ","))
	}
	return newShape(fmt.Sprintf("random%d", n), edges...)
}

var shapes = []shape{
	newShape("linear", "a", "b<a", "c<b", "d<c"),
	newShape("diamond", "a", "b<a", "c<a", "d<b,c"),
	newShape("merge", "r1", "r2", "r3", "m<r1,r2,r3"),
	newShape("tree", "a", "b<a", "c<a", "d<b", "e<b", "f<c", "g<c"),
	newShape("mixed", "a", "b", "c<a", "d<a,b", "e<c,d", "f<b", "g<e,f"),
	fanInShape(40),
}

// fanInShape is root -> n leaves -> join: with max_parallel_steps 8 the
// leaves run in waves, results are recorded while the next wave is claimed,
// and the join may be claimed only once the coordinator has seen all n
// leaves complete.
func fanInShape(n int) shape {
	specs := []string{"root"}
	leaves := make([]string, n)
	for i := range leaves {
		leaves[i] = fmt.Sprintf("l%02d", i)
		specs = append(specs, leaves[i]+"<root")
	}
	specs = append(specs, "join<"+strings.Join(leaves, ","))
	return newShape(fmt.Sprintf("fanin%d", n), specs...)
}

// templateYAML renders a shape as a template; cfg gives per-step handler_config.
func templateYAML(s shape, maxAttempts int, retryable map[string]bool, cfg map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: %s\nnamespace_name: test\nversion: 1.0.0\nmax_parallel_steps: 8\nstep_templates:\n", s.name)
	for _, step := range s.order {
		fmt.Fprintf(&b, "  - name: %s\n    handler_class: Recorder\n    default_retry_limit: %d\n", step, maxAttempts)
		if r, ok := retryable[step]; ok {
			fmt.Fprintf(&b, "    default_retryable: %t\n", r)
		}
		if ps := s.deps[step]; len(ps) > 0 {
			fmt.Fprintf(&b, "    depends_on_steps: [%s]\n", strings.Join(ps, ", "))
		}
		if c := cfg[step]; c != "" {
			fmt.Fprintf(&b, "    handler_config: %s\n", c)
		}
	}
	return b.String()
}

type scenario struct {
	name        string
	maxAttempts int
	retryable   map[string]bool
	// cfg picks the failing step: the shape's last step in topological order.
	cfg          func(last string) map[string]string
	wantTask     tasker.TaskState
	wantAttempts int // attempts of the last step
	wantLast     tasker.StepState
	minDuration  time.Duration
}

var scenarios = []scenario{
	{name: "success", maxAttempts: 3, cfg: func(string) map[string]string { return nil },
		wantTask: tasker.TaskState("complete"), wantAttempts: 1, wantLast: "complete"},
	{name: "fail_twice_then_succeed", maxAttempts: 3,
		cfg:      func(l string) map[string]string { return map[string]string{l: "{fail_times: 2}"} },
		wantTask: "complete", wantAttempts: 3, wantLast: "complete"},
	{name: "permanent_failure", maxAttempts: 5,
		cfg:      func(l string) map[string]string { return map[string]string{l: "{always: true, permanent: true}"} },
		wantTask: "error", wantAttempts: 1, wantLast: "error"},
	{name: "attempts_exhausted", maxAttempts: 3,
		cfg:      func(l string) map[string]string { return map[string]string{l: "{always: true}"} },
		wantTask: "error", wantAttempts: 3, wantLast: "error"},
	{name: "max_attempts_1", maxAttempts: 1,
		cfg:      func(l string) map[string]string { return map[string]string{l: "{fail_times: 1}"} },
		wantTask: "error", wantAttempts: 1, wantLast: "error"},
	{name: "non_retryable_first_attempt_runs", maxAttempts: 3,
		cfg:      func(l string) map[string]string { return map[string]string{l: "{fail_times: 1}"} },
		wantTask: "error", wantAttempts: 1, wantLast: "error"},
	{name: "server_requested_delay", maxAttempts: 3,
		cfg:      func(l string) map[string]string { return map[string]string{l: "{fail_times: 1, retry_after: 1}"} },
		wantTask: "complete", wantAttempts: 2, wantLast: "complete", minDuration: time.Second},
}

// recordingClient opens a client on url with the recorder registered as
// the "Recorder" handler.
func recordingClient(t *testing.T, url string) (*tasker.Client, *recorder) {
	t.Helper()
	c := openClient(t, url)
	rec := &recorder{}
	c.RegisterHandler("Recorder", rec)
	return c, rec
}

func TestWorkflowShapes(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c, rec := recordingClient(t, url)
		all := append(slices.Clone(shapes), randomShape(200, 7))
		for _, sh := range all {
			for _, sc := range scenarios {
				if sh.name == "random200" && sc.minDuration > 0 {
					continue // one slow scenario per small shape is enough
				}
				t.Run(sh.name+"/"+sc.name, func(t *testing.T) {
					last := sh.order[len(sh.order)-1]
					retryable := map[string]bool{}
					if sc.name == "non_retryable_first_attempt_runs" {
						retryable[last] = false
					}
					name := sh.name + "_" + sc.name
					s2 := sh
					s2.name = name
					_, err := c.AddTemplate(name+".yml", []byte(templateYAML(s2, sc.maxAttempts, retryable, sc.cfg(last))))
					require.NoError(t, err)
					ctx := context.Background()
					task, created, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: name,
						Context: json.RawMessage(`{"k":"v"}`), Initiator: "test"})
					require.NoError(t, err)
					require.True(t, created)
					start := time.Now()
					res, err := c.RunTask(ctx, task.ID)
					require.NoError(t, err)
					require.Equal(t, sc.wantTask, res.Status, "outcome %s: %s", res.Outcome, res.Reason)
					if sc.minDuration > 0 {
						require.GreaterOrEqual(t, time.Since(start), sc.minDuration, "server-requested delay honoured")
					}
					detail, err := c.Task(ctx, task.ID)
					require.NoError(t, err)
					require.Equal(t, sc.wantTask, detail.State)
					for _, st := range detail.Steps {
						if st.Name == last {
							require.Equal(t, sc.wantLast, st.State)
							require.Equal(t, sc.wantAttempts, st.Attempts)
							require.LessOrEqual(t, st.Attempts, st.MaxAttempts)
							if sc.wantLast == "complete" {
								var out map[string]any
								require.NoError(t, json.Unmarshal(st.Results, &out))
								require.Equal(t, float64(sc.wantAttempts), out["attempt"])
							} else {
								require.Contains(t, string(st.Error), "planned failure")
							}
						} else if sc.wantTask == "error" && !sh.ancestors(last)[st.Name] {
							// Fail fast: once the last step failed for good, the
							// coordinator claims nothing more, so a step on
							// another branch either ran once or never started.
							if st.State == "pending" {
								require.Equal(t, 0, st.Attempts, "step %s", st.Name)
							} else {
								require.Equal(t, tasker.StepState("complete"), st.State, "step %s", st.Name)
								require.Equal(t, 1, st.Attempts, "step %s", st.Name)
							}
						} else {
							require.Equal(t, tasker.StepState("complete"), st.State, "step %s", st.Name)
							require.Equal(t, 1, st.Attempts, "step %s", st.Name)
						}
					}
					// The audit trail holds every transition, ending in the final states.
					taskTrs, stepTrs, err := c.Transitions(ctx, task.ID)
					require.NoError(t, err)
					require.Equal(t, "pending", taskTrs[0].ToState)
					require.Equal(t, string(sc.wantTask), taskTrs[len(taskTrs)-1].ToState)
					require.True(t, taskTrs[len(taskTrs)-1].MostRecent)
					perStep := map[string][]*tasker.Transition{}
					for _, tr := range stepTrs {
						perStep[tr.StepName] = append(perStep[tr.StepName], tr)
					}
					lastTrs := perStep[last]
					// initialize + (claim + outcome) per attempt
					require.Len(t, lastTrs, 1+2*sc.wantAttempts, "transitions of %s", last)
					require.Equal(t, string(sc.wantLast), lastTrs[len(lastTrs)-1].ToState)
					if sc.wantAttempts > 1 && sc.wantLast == "complete" {
						require.Equal(t, "waiting_for_retry", lastTrs[2].ToState)
					}
					rec.checkOrder(t, task.ID, sh.deps)
					q, err := c.Queue(ctx)
					require.NoError(t, err)
					for _, e := range q {
						require.NotEqual(t, task.ID, e.TaskID, "finalized task left in the queue")
					}
				})
			}
		}
	})
}

// TestWideFanInRunsEveryStepOnce runs 700 leaves with max_parallel_steps
// 1,000: the claim of the leaves (nothing else of the task running) is made
// as two claims at once, and their results recorded as two transactions at
// once. Every step must run exactly once, after its parents.
func TestWideFanInRunsEveryStepOnce(t *testing.T) {
	t.Parallel()
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c, rec := recordingClient(t, url)
		sh := fanInShape(700)
		yaml := templateYAML(sh, 1, nil, nil)
		require.Contains(t, yaml, "max_parallel_steps: 8\n", "the test widens the template's max_parallel_steps")
		yaml = strings.Replace(yaml, "max_parallel_steps: 8\n", "max_parallel_steps: 1000\n", 1)
		_, err := c.AddTemplate("wide.yml", []byte(yaml))
		require.NoError(t, err)
		ctx := context.Background()
		task, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "test", Name: sh.name})
		require.NoError(t, err)
		res, err := c.RunTask(ctx, task.ID)
		require.NoError(t, err)
		require.Equal(t, tasker.TaskState("complete"), res.Status, "outcome %s: %s", res.Outcome, res.Reason)
		rec.checkOrder(t, task.ID, sh.deps)
		runs := map[string]int{}
		rec.mu.Lock()
		for _, a := range rec.attempts {
			if a.taskID == task.ID {
				runs[a.step]++
			}
		}
		rec.mu.Unlock()
		require.Len(t, runs, 702)
		for step, n := range runs {
			require.Equal(t, 1, n, "step %s ran %d times", step, n)
		}
		detail, err := c.Task(ctx, task.ID)
		require.NoError(t, err)
		for _, st := range detail.Steps {
			require.Equal(t, tasker.StepState("complete"), st.State, "step %s", st.Name)
			require.Equal(t, 1, st.Attempts, "step %s", st.Name)
		}
	})
}

func TestErrorsAreTyped(t *testing.T) {
	t.Parallel()
	c := openClient(t, "sqlite:"+testdb.SQLitePath(t))
	_, _, err := c.InitializeTask(context.Background(), &tasker.TaskRequest{Namespace: "nope", Name: "missing"})
	require.True(t, errors.Is(err, tasker.ErrNotFound), "%v", err)
}
