package metrics_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/engine"
	"github.com/tasker-systems/tasker/internal/metrics"
	"github.com/tasker-systems/tasker/internal/store/sqlcore"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/taskertype"
)

const flakyTemplate = `
name: flaky_order
namespace_name: shop
version: 1.0.0
step_templates:
  - name: fetch
    handler_class: Fetch
  - name: charge
    depends_on_step: fetch
    handler_class: Charge
    default_retry_limit: 3
  - name: ship
    depends_on_step: charge
    handler_class: tasker:noop
`

const doomedTemplate = `
name: doomed
namespace_name: ops
step_templates:
  - name: explode
    handler_class: Explode
`

// waitFor polls cond until it holds or limit passes.
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// openClient opens a client on url with its metrics on a fresh registry.
func openClient(t *testing.T, url string) (*tasker.Client, *prometheus.Registry) {
	t.Helper()
	reg := metrics.NewRegistry()
	c, err := tasker.Open(context.Background(), tasker.Config{DatabaseURL: url, AutoMigrate: true,
		TemplatesDir: t.TempDir(), Metrics: reg, PollInterval: 20 * time.Millisecond,
		Backoff: tasker.BackoffConfig{Base: time.Millisecond, Min: time.Millisecond, Max: 5 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	for file, doc := range map[string]string{"flaky.yml": flakyTemplate, "doomed.yml": doomedTemplate} {
		if _, err := c.AddTemplate(file, []byte(doc)); err != nil {
			t.Fatal(err)
		}
	}
	c.RegisterHandler("Fetch", tasker.StepHandlerFunc(func(ctx context.Context, sc *tasker.StepContext) (any, error) {
		return map[string]any{"ok": true}, nil
	}))
	c.RegisterHandler("Charge", tasker.StepHandlerFunc(func(ctx context.Context, sc *tasker.StepContext) (any, error) {
		if sc.Attempt == 1 {
			return nil, tasker.Retryable(errors.New("gateway busy"), 0)
		}
		time.Sleep(30 * time.Millisecond)
		return map[string]any{"charged": true}, nil
	}))
	c.RegisterHandler("Explode", tasker.StepHandlerFunc(func(ctx context.Context, sc *tasker.StepContext) (any, error) {
		return nil, tasker.Permanent(errors.New("boom"))
	}))
	return c, reg
}

// value returns the value of the sample of name whose labels include
// labels (counter, gauge, or a histogram's count), and whether it exists.
func value(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metric
				}
			}
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue(), true
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue(), true
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func TestWorkflowMetrics(t *testing.T) {
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c, reg := openClient(t, url)
		ctx, cancel := context.WithCancel(context.Background())
		runDone := make(chan error, 1)
		go func() { runDone <- c.Run(ctx, 2) }()
		t.Cleanup(func() { cancel(); <-runDone })

		const n = 3
		for i := range n {
			if _, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "shop", Name: "flaky_order",
				Context: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "ops", Name: "doomed"}); err != nil {
			t.Fatal(err)
		}
		finished := func(ns, name, state string) float64 {
			v, _ := value(t, reg, "tasker_tasks_finished_total", map[string]string{"namespace": ns, "name": name, "state": state})
			return v
		}
		waitFor(t, 30*time.Second, "every task finalized", func() bool {
			return finished("shop", "flaky_order", "complete") == n && finished("ops", "doomed", "error") == 1
		})
		want := []struct {
			name   string
			labels map[string]string
			v      float64
		}{
			{"tasker_tasks_created_total", map[string]string{"namespace": "shop", "name": "flaky_order"}, n},
			{"tasker_tasks_created_total", map[string]string{"namespace": "ops", "name": "doomed"}, 1},
			{"tasker_step_attempts_total", map[string]string{"handler_class": "Fetch"}, n},
			{"tasker_step_attempts_total", map[string]string{"handler_class": "Charge"}, 2 * n},
			{"tasker_step_attempts_total", map[string]string{"handler_class": "tasker:noop"}, n},
			{"tasker_step_failures_total", map[string]string{"handler_class": "Charge", "kind": "retryable", "permanent": "false"}, n},
			{"tasker_step_failures_total", map[string]string{"handler_class": "Explode", "kind": "permanent", "permanent": "true"}, 1},
			{"tasker_step_retries_total", map[string]string{"handler_class": "Charge"}, n},
			{"tasker_step_duration_seconds", map[string]string{"handler_class": "Charge", "outcome": "success"}, n},
			{"tasker_step_duration_seconds", map[string]string{"handler_class": "Charge", "outcome": "failure"}, n},
			{"tasker_events_dropped_total", nil, 0},
		}
		for _, w := range want {
			got, ok := value(t, reg, w.name, w.labels)
			if !ok || got != w.v {
				t.Errorf("%s%v = %v (present %v), want %v", w.name, w.labels, got, ok, w.v)
			}
		}
		// The 30 ms successes land above the 25 ms bucket (and, on a busy
		// machine, anywhere below 10 s).
		if got := bucket(t, reg, "tasker_step_duration_seconds", "Charge", "success", 0.025); got != 0 {
			t.Errorf("Charge successes under 25 ms: %v, want 0", got)
		}
		if got := bucket(t, reg, "tasker_step_duration_seconds", "Charge", "success", 10); got != n {
			t.Errorf("Charge successes under 10 s: %v, want %d", got, n)
		}
		// Creations go out one by one or coalesced (the engine's creates),
		// timed as task_create or task_create_many.
		one, _ := value(t, reg, "tasker_db_call_duration_seconds", map[string]string{"operation": "task_create"})
		many, _ := value(t, reg, "tasker_db_call_duration_seconds", map[string]string{"operation": "task_create_many"})
		if one+many < 1 {
			t.Errorf("db calls timed for task_create and task_create_many: %v, want at least 1", one+many)
		}
		for _, op := range []string{"queue_claim", "task_start_and_claim", "step_record_finalize"} {
			if got, _ := value(t, reg, "tasker_db_call_duration_seconds", map[string]string{"operation": op}); got < 1 {
				t.Errorf("db calls timed for %s: %v, want at least 1", op, got)
			}
		}
		if _, ok := value(t, reg, "tasker_queue_tasks", nil); !ok {
			t.Error("tasker_queue_tasks missing")
		}
		checkExposition(t, reg)
	})
}

// bucket returns the cumulative count of the histogram bucket le.
func bucket(t *testing.T, g prometheus.Gatherer, name, class, outcome string, le float64) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			if l["handler_class"] != class || l["outcome"] != outcome {
				continue
			}
			for _, b := range m.GetHistogram().GetBucket() {
				if b.GetUpperBound() == le {
					return float64(b.GetCumulativeCount())
				}
			}
		}
	}
	t.Fatalf("no bucket %v of %s{%s,%s}", le, name, class, outcome)
	return 0
}

// TestQueueGauges creates tasks nobody runs: they are all due, and the
// oldest has been due since its creation.
func TestQueueGauges(t *testing.T) {
	testdb.EachBackend(t, func(t *testing.T, url string) {
		c, reg := openClient(t, url)
		ctx := context.Background()
		for range 4 {
			if _, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "ops", Name: "doomed"}); err != nil {
				t.Fatal(err)
			}
		}
		created := time.Now()
		// The first scrape reads the queue; wait past its creation so the
		// age is measurably positive.
		waitFor(t, 5*time.Second, "clock to move", func() bool { return time.Since(created) > 20*time.Millisecond })
		for name, want := range map[string]float64{"tasker_queue_due_tasks": 4, "tasker_queue_tasks": 4, "tasker_queue_leased_tasks": 0} {
			if got, ok := value(t, reg, name, nil); !ok || got != want {
				t.Errorf("%s = %v (present %v), want %v", name, got, ok, want)
			}
		}
		age, ok := value(t, reg, "tasker_queue_oldest_due_age_seconds", nil)
		if !ok || age < 0.02 || age > 60 {
			t.Errorf("oldest due age = %v (present %v), want between 20 ms and a minute", age, ok)
		}
		if got, _ := value(t, reg, "tasker_queue_stats_errors_total", nil); got != 0 {
			t.Errorf("queue stats errors = %v", got)
		}
	})
}

// TestObserveEvents feeds events by hand, including a lease rescue and
// operator actions no workflow above produces.
func TestObserveEvents(t *testing.T) {
	m := metrics.New(metrics.Options{})
	reg := prometheus.NewRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	evs := []taskertype.Event{
		{Kind: taskertype.EventStepStarted, Data: map[string]any{"attempt": 1, "handler_class": "Slow"}},
		{Kind: taskertype.EventStepFailed, Data: map[string]any{"attempt": 1, "handler_class": "Slow", "kind": "lease_expired", "permanent": false}},
		{Kind: taskertype.EventStepRetryScheduled, Data: map[string]any{"attempt": 1, "handler_class": "Slow"}},
		{Kind: taskertype.EventStepFailed, Data: map[string]any{"attempt": 2, "handler_class": "Slow", "kind": "timeout", "permanent": true, "duration_ms": int64(2500)}},
		{Kind: taskertype.EventTaskBlocked, Data: map[string]any{"namespace": "a", "name": "b"}},
		{Kind: taskertype.EventTaskCancelled},
		{Kind: taskertype.EventStepRetried},
		{Kind: taskertype.EventStepRetried},
	}
	for _, ev := range evs {
		m.Observe(ev)
	}
	for _, w := range []struct {
		name   string
		labels map[string]string
		v      float64
	}{
		{"tasker_lease_rescues_total", map[string]string{"handler_class": "Slow"}, 1},
		{"tasker_step_failures_total", map[string]string{"handler_class": "Slow", "kind": "lease_expired", "permanent": "false"}, 1},
		{"tasker_step_failures_total", map[string]string{"handler_class": "Slow", "kind": "timeout", "permanent": "true"}, 1},
		{"tasker_step_duration_seconds", map[string]string{"handler_class": "Slow", "outcome": "failure"}, 1},
		{"tasker_step_retries_total", map[string]string{"handler_class": "Slow"}, 1},
		{"tasker_tasks_finished_total", map[string]string{"namespace": "a", "name": "b", "state": "blocked"}, 1},
		{"tasker_operator_actions_total", map[string]string{"action": "task_cancelled"}, 1},
		{"tasker_operator_actions_total", map[string]string{"action": "step_retried"}, 2},
		{"tasker_metrics_events_total", nil, float64(len(evs))},
	} {
		if got, ok := value(t, reg, w.name, w.labels); !ok || got != w.v {
			t.Errorf("%s%v = %v (present %v), want %v", w.name, w.labels, got, ok, w.v)
		}
	}
	// A second registration on the same registry is refused and leaves the
	// first intact.
	if err := metrics.New(metrics.Options{}).Register(reg); err == nil {
		t.Error("registering twice succeeded")
	}
	if got, _ := value(t, reg, "tasker_lease_rescues_total", map[string]string{"handler_class": "Slow"}); got != 1 {
		t.Errorf("after a refused registration: rescues = %v", got)
	}
	m.Unregister()
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Errorf("after Unregister: %d metrics (%v), want 0", n, err)
	}
}

// TestEventsDropped counts a slow subscriber's losses.
func TestEventsDropped(t *testing.T) {
	bus := engine.NewBus()
	m := metrics.New(metrics.Options{})
	reg := prometheus.NewRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	m.Start(bus, nil)
	defer m.Stop()
	_, cancel := bus.Subscribe(1) // never read
	defer cancel()
	for range 5 {
		bus.Publish(taskertype.Event{Kind: taskertype.EventStepStarted, Data: map[string]any{"handler_class": "X"}})
	}
	if got, _ := value(t, reg, "tasker_events_dropped_total", nil); got != 4 {
		t.Errorf("events dropped = %v, want 4", got)
	}
	waitFor(t, 5*time.Second, "the metrics subscriber to count 5 attempts", func() bool {
		v, _ := value(t, reg, "tasker_step_attempts_total", map[string]string{"handler_class": "X"})
		return v == 5
	})
	if _, ok := value(t, reg, "tasker_queue_tasks", nil); ok {
		t.Error("queue gauges reported without a store")
	}
}

type failingStats struct{ calls atomic.Int64 }

func (f *failingStats) QueueStats(context.Context, time.Time) (*sqlcore.QueueStats, error) {
	f.calls.Add(1)
	return nil, errors.New("database down")
}

// TestQueueStatsFailure: a failing query drops the gauges and is counted.
func TestQueueStatsFailure(t *testing.T) {
	m := metrics.New(metrics.Options{Logger: discardLogger()})
	reg := prometheus.NewRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	fs := &failingStats{}
	m.Start(engine.NewBus(), fs)
	defer m.Stop()
	if _, ok := value(t, reg, "tasker_queue_due_tasks", nil); ok {
		t.Error("gauge reported although the query failed")
	}
	// The failure is remembered for QueueStatsInterval: a second scrape
	// does not query a database that just failed.
	if got, _ := value(t, reg, "tasker_queue_stats_errors_total", nil); got != 1 || fs.calls.Load() != 1 {
		t.Errorf("errors = %v after %d calls, want 1 and 1", got, fs.calls.Load())
	}
}

// TestMountAuth: /metrics needs the API token when one is set; other paths
// go to the API handler.
func TestMountAuth(t *testing.T) {
	reg := metrics.NewRegistry()
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "api") })
	srv := httptest.NewServer(metrics.Mount(api, reg, "s3cret"))
	defer srv.Close()
	get := func(path, token string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", code)
	}
	if code, _ := get("/metrics", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong token: %d, want 401", code)
	}
	if code, body := get("/metrics", "s3cret"); code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
		t.Errorf("with token: %d %.100q", code, body)
	}
	if code, body := get("/v1/info", ""); code != http.StatusOK || body != "api" {
		t.Errorf("other path: %d %q, want the API's answer", code, body)
	}
}

// checkExposition runs `promtool check metrics` on the text exposition of
// g (skipped when promtool is missing, failed under CI=true).
func checkExposition(t *testing.T, g prometheus.Gatherer) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not found (Debian package prometheus): the exposition must be checked under CI")
		}
		t.Log("promtool not found (apt-get install prometheus): exposition not checked")
		return
	}
	srv := httptest.NewServer(metrics.Mount(http.NotFoundHandler(), g, ""))
	defer srv.Close()
	resp, err := http.Get(srv.URL + metrics.Path)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	if !bytes.Contains(body, []byte("tasker_step_attempts_total")) {
		t.Fatalf("exposition lacks tasker metrics:\n%.500s", body)
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestPromtoolRejectsBadExposition shows the check can fail.
func TestPromtoolRejectsBadExposition(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not found (Debian package prometheus)")
		}
		t.Skip("promtool not found")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	// A counter without the _total suffix is a lint problem (exit status 3).
	cmd.Stdin = strings.NewReader("# HELP tasker_x x\n# TYPE tasker_x counter\ntasker_x 1\n")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("promtool accepted a counter without _total:\n%s", out)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestOpenTwiceOnOneRegistry: a second client on the same registerer is
// refused with a clear error, and closing the first leaves its collectors.
func TestOpenTwiceOnOneRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	ctx := context.Background()
	c1, err := tasker.Open(ctx, tasker.Config{DatabaseURL: "sqlite:" + testdb.SQLitePath(t), TemplatesDir: t.TempDir(), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tasker.Open(ctx, tasker.Config{DatabaseURL: "sqlite:" + testdb.SQLitePath(t), TemplatesDir: t.TempDir(), Metrics: reg})
	if err == nil || !strings.Contains(err.Error(), "register metrics") {
		t.Errorf("second Open on one registry: %v, want a registration error", err)
	}
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := value(t, reg, "tasker_metrics_events_total", nil); !ok {
		t.Error("collectors gone after Close")
	}
	// Clients that each add a distinct value of one label share a registry.
	shared := prometheus.NewRegistry()
	for _, name := range []string{"one", "two"} {
		c, err := tasker.Open(ctx, tasker.Config{DatabaseURL: "sqlite:" + testdb.SQLitePath(t), TemplatesDir: t.TempDir(),
			Metrics: prometheus.WrapRegistererWith(prometheus.Labels{"client": name}, shared)})
		if err != nil {
			t.Fatalf("client %s on a wrapped registerer: %v", name, err)
		}
		defer c.Close()
	}
	for _, name := range []string{"one", "two"} {
		if _, ok := value(t, shared, "tasker_metrics_events_total", map[string]string{"client": name}); !ok {
			t.Errorf("no series for client %s", name)
		}
	}
}
