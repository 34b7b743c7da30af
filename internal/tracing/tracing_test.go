package tracing_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/httpapi"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/internal/tracing"
	"github.com/tasker-systems/tasker/internal/tracing/otlpenv"
	"github.com/tasker-systems/tasker/internal/tracing/tracectx"
)

// The caller's trace: a request that created the task.
const (
	callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan  = "00f067aa0ba902b7"
	callerTP    = "00-" + callerTrace + "-" + callerSpan + "-01"
)

const tracedTemplate = `
name: traced
namespace_name: shop
version: 2.1.0
step_templates:
  - name: call
    handler_class: tasker:http
    handler_config:
      method: GET
      url: "${raw:context.url}"
  - name: flaky
    depends_on_step: call
    handler_class: Flaky
    default_retry_limit: 3
`

// recorder is a downstream HTTP service that keeps the traceparent
// headers it received.
type recorder struct {
	mu      sync.Mutex
	headers []string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.headers = append(r.headers, req.Header.Get("traceparent"))
	r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"ok":true}`)
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.headers...)
}

// runTraced creates one task through the HTTP API with a traceparent header
// and runs it to completion on a client exporting to exp; the client is
// closed (spans flushed) on return. It returns the task id, the
// traceparents the tasker:http step sent and those the Go handler saw.
func runTraced(t *testing.T, dbURL string, exp sdktrace.SpanExporter) (int64, []string, []string) {
	t.Helper()
	ctx := context.Background()
	c, err := tasker.Open(ctx, tasker.Config{DatabaseURL: dbURL, AutoMigrate: true, TemplatesDir: t.TempDir(),
		TraceExporter: exp, PollInterval: 20 * time.Millisecond,
		Backoff: tasker.BackoffConfig{Base: time.Millisecond, Min: time.Millisecond, Max: 5 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = c.Close()
		}
	}()
	if _, err := c.AddTemplate("traced.yml", []byte(tracedTemplate)); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	c.RegisterHandler("Flaky", tasker.StepHandlerFunc(func(ctx context.Context, sc *tasker.StepContext) (any, error) {
		mu.Lock()
		seen = append(seen, sc.TraceParent)
		mu.Unlock()
		if sc.Attempt == 1 {
			return nil, tasker.Retryable(errors.New("not yet"), 0)
		}
		return map[string]any{"done": true}, nil
	}))
	down := &recorder{}
	downSrv := httptest.NewServer(down)
	defer downSrv.Close()
	api := httptest.NewServer(httpapi.New(c, httpapi.Options{}))
	defer api.Close()

	body := fmt.Sprintf(`{"namespace":"shop","name":"traced","context":{"url":%q}}`, downSrv.URL+"/orders")
	req, _ := http.NewRequest(http.MethodPost, api.URL+"/v1/tasks", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", callerTP)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var created struct {
		Task struct {
			ID   int64    `json:"task_id"`
			Tags []string `json:"tags"`
		} `json:"task"`
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /v1/tasks: %d %s", resp.StatusCode, raw)
	}
	if err := json.Unmarshal(raw, &created); err != nil {
		t.Fatal(err)
	}
	if want := tracectx.TagPrefix + callerTP; len(created.Task.Tags) != 1 || created.Task.Tags[0] != want {
		t.Errorf("task tags %q, want [%q]", created.Task.Tags, want)
	}
	res, err := c.RunTask(ctx, created.Task.ID)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != "complete" {
		t.Fatalf("task is %s: %s", res.Status, res.Reason)
	}
	closed = true
	if err := c.Close(); err != nil { // flushes the spans
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return created.Task.ID, down.got(), seen
}

// keepOnShutdown keeps the in-memory exporter's spans when the client
// shuts it down (its Shutdown forgets them).
type keepOnShutdown struct{ *tracetest.InMemoryExporter }

func (keepOnShutdown) Shutdown(context.Context) error { return nil }

func attrs(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

func mustTraceID(t *testing.T, s string) trace.TraceID {
	id, err := trace.TraceIDFromHex(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestSpansInMemory checks the spans of a task created over HTTP with a
// traceparent: one task span, child of the caller's span, and one span per
// attempt, children of the task span, with the ids the attempts handed on.
func TestSpansInMemory(t *testing.T) {
	testdb.EachBackend(t, func(t *testing.T, url string) {
		exp := tracetest.NewInMemoryExporter()
		taskID, sent, seen := runTraced(t, url, keepOnShutdown{exp})
		tid := mustTraceID(t, callerTrace)
		spans := exp.GetSpans()
		if len(spans) != 4 {
			for _, s := range spans {
				t.Logf("span %s %v", s.Name, attrs(s.Attributes))
			}
			t.Fatalf("%d spans, want 4 (task, call, flaky x2)", len(spans))
		}
		taskSpan := tracectx.TaskSpanID(tid, taskID)
		byName := map[string][]tracetest.SpanStub{}
		for _, s := range spans {
			if s.SpanContext.TraceID() != tid {
				t.Errorf("span %s in trace %s, want the caller's %s", s.Name, s.SpanContext.TraceID(), tid)
			}
			byName[s.Name] = append(byName[s.Name], s)
		}
		ts := byName["task shop/traced"]
		if len(ts) != 1 {
			t.Fatalf("task spans: %d", len(ts))
		}
		if ts[0].Parent.SpanID().String() != callerSpan || ts[0].SpanContext.SpanID() != taskSpan {
			t.Errorf("task span %s parent %s, want %s parent %s", ts[0].SpanContext.SpanID(), ts[0].Parent.SpanID(), taskSpan, callerSpan)
		}
		a := attrs(ts[0].Attributes)
		if a["tasker.template"] != "shop/traced@2.1.0" || a["tasker.outcome"] != "complete" || a["tasker.task_id"] != fmt.Sprint(taskID) {
			t.Errorf("task span attributes %v", a)
		}
		var stepIDs = map[string]int64{}
		for _, name := range []string{"step call", "step flaky"} {
			for _, s := range byName[name] {
				a := attrs(s.Attributes)
				if s.Parent.SpanID() != taskSpan {
					t.Errorf("%s: parent %s, want the task span %s", name, s.Parent.SpanID(), taskSpan)
				}
				var stepID, attempt int64
				fmt.Sscan(a["tasker.step_id"], &stepID)
				fmt.Sscan(a["tasker.attempt"], &attempt)
				stepIDs[a["tasker.step"]] = stepID
				if want := tracectx.AttemptSpanID(tid, taskID, stepID, int(attempt)); s.SpanContext.SpanID() != want {
					t.Errorf("%s attempt %d: span id %s, want the derived %s", name, attempt, s.SpanContext.SpanID(), want)
				}
				if s.StartTime.After(s.EndTime) || s.StartTime.Before(ts[0].StartTime) || s.EndTime.After(ts[0].EndTime) {
					t.Errorf("%s: %s..%s outside the task's %s..%s", name, s.StartTime, s.EndTime, ts[0].StartTime, ts[0].EndTime)
				}
			}
		}
		if c := byName["step call"]; len(c) != 1 || attrs(c[0].Attributes)["tasker.outcome"] != "success" ||
			attrs(c[0].Attributes)["tasker.handler_class"] != "tasker:http" {
			t.Errorf("call spans: %+v", c)
		}
		outcomes := map[string]codes.Code{}
		for _, s := range byName["step flaky"] {
			a := attrs(s.Attributes)
			outcomes[a["tasker.attempt"]+":"+a["tasker.outcome"]] = s.Status.Code
		}
		if len(outcomes) != 2 || outcomes["1:retryable"] != codes.Error || outcomes["2:success"] != codes.Unset {
			t.Errorf("flaky attempts: %v, want attempt 1 retryable (error status) and 2 success", outcomes)
		}
		// The tasker:http request carried the attempt span's traceparent, and
		// so did the Go handler's StepContext.
		wantCall := "00-" + callerTrace + "-" + tracectx.AttemptSpanID(tid, taskID, stepIDs["call"], 1).String() + "-01"
		if len(sent) != 1 || sent[0] != wantCall {
			t.Errorf("tasker:http sent traceparent %q, want [%q]", sent, wantCall)
		}
		wantFlaky := []string{
			"00-" + callerTrace + "-" + tracectx.AttemptSpanID(tid, taskID, stepIDs["flaky"], 1).String() + "-01",
			"00-" + callerTrace + "-" + tracectx.AttemptSpanID(tid, taskID, stepIDs["flaky"], 2).String() + "-01",
		}
		if fmt.Sprint(seen) != fmt.Sprint(wantFlaky) {
			t.Errorf("handler saw %q, want %q", seen, wantFlaky)
		}
	})
}

// TestNoExporterStillPropagates: without tracing the caller's traceparent
// is handed on unchanged and no spans are made.
func TestNoExporterStillPropagates(t *testing.T) {
	_, sent, seen := runTraced(t, "sqlite:"+testdb.SQLitePath(t), nil)
	if len(sent) != 1 || sent[0] != callerTP {
		t.Errorf("tasker:http sent %q, want the caller's %q", sent, callerTP)
	}
	if len(seen) != 2 || seen[0] != callerTP {
		t.Errorf("handler saw %q", seen)
	}
}

// TestOTLPReceiver exports through the real OTLP/HTTP exporter, configured
// by the standard environment variables, to a receiver on 127.0.0.1 that
// decodes the protobuf export requests.
func TestOTLPReceiver(t *testing.T) {
	var mu sync.Mutex
	var got []*collectortrace.ExportTraceServiceRequest
	var bad []string
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			bad = append(bad, r.Method+" "+r.URL.Path+" "+r.Header.Get("Content-Type"))
			w.WriteHeader(http.StatusNotFound)
			return
		}
		if r.Header.Get("Content-Encoding") == "gzip" {
			bad = append(bad, "gzip body")
		}
		var req collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &req); err != nil {
			bad = append(bad, err.Error())
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		got = append(got, &req)
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	defer recv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
	t.Setenv("OTEL_SERVICE_NAME", "tasker-test")
	if !otlpenv.Enabled() {
		t.Fatal("Enabled() is false with OTEL_EXPORTER_OTLP_ENDPOINT set")
	}
	exp, err := otlpenv.ExporterFromEnv(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	taskID, _, _ := runTraced(t, "sqlite:"+testdb.SQLitePath(t), exp)

	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Errorf("bad export requests: %q", bad)
	}
	names := map[string]int{}
	service := ""
	for _, req := range got {
		for _, rs := range req.GetResourceSpans() {
			for _, kv := range rs.GetResource().GetAttributes() {
				if kv.GetKey() == "service.name" {
					service = kv.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					names[s.GetName()]++
					if tid := mustTraceID(t, callerTrace); !bytes.Equal(s.GetTraceId(), tid[:]) {
						t.Errorf("span %s: trace %x", s.GetName(), s.GetTraceId())
					}
					if s.GetName() == "task shop/traced" {
						id := tracectx.TaskSpanID(mustTraceID(t, callerTrace), taskID)
						if !bytes.Equal(s.GetSpanId(), id[:]) {
							t.Errorf("task span id %x, want %s", s.GetSpanId(), id)
						}
					}
				}
			}
		}
	}
	if names["task shop/traced"] != 1 || names["step call"] != 1 || names["step flaky"] != 2 {
		t.Errorf("received spans %v, want task x1, call x1, flaky x2", names)
	}
	if service != "tasker-test" {
		t.Errorf("service.name %q, want tasker-test", service)
	}
}

func TestProtocolRefused(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
	if _, err := otlpenv.ExporterFromEnv(context.Background()); err == nil {
		t.Error("grpc accepted")
	}
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	if otlpenv.Enabled() {
		t.Error("Enabled() with OTEL_TRACES_EXPORTER=none")
	}
}

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		zero bool
		ok   bool
	}{
		{callerTP, false, true},
		{"00-" + callerTrace + "-0000000000000000-01", false, false},
		{"00-" + callerTrace + "-0000000000000000-01", true, true},
		{"00-00000000000000000000000000000000-" + callerSpan + "-01", true, false},
		{"01-" + callerTrace + "-" + callerSpan + "-01", false, false},
		{"00-" + strings.ToUpper(callerTrace) + "-" + callerSpan + "-01", false, false},
		{"00-" + callerTrace + "-" + callerSpan + "-01-extra", false, false},
		{"", false, false},
	} {
		p, ok := tracectx.Parse(c.in, c.zero)
		if ok != c.ok {
			t.Errorf("Parse(%q, %v) ok = %v, want %v", c.in, c.zero, ok, c.ok)
		}
		if ok && p.String() != c.in {
			t.Errorf("Parse(%q).String() = %q", c.in, p.String())
		}
	}
	// An invalid header leaves the context alone; a request that brings its
	// own tag keeps it.
	if sc := trace.SpanContextFromContext(tracectx.ContextWithTraceParent(context.Background(), "garbage")); sc.IsValid() {
		t.Error("garbage traceparent accepted")
	}
	req := &tasker.TaskRequest{Tags: []string{"a", tracectx.TagPrefix + callerTP}}
	ctx := tracectx.ContextWithTraceParent(context.Background(), "00-"+strings.Repeat("1", 32)+"-"+strings.Repeat("2", 16)+"-01")
	if out := tracing.TagRequest(ctx, req, true); out != req {
		t.Error("a request with a trace tag was changed")
	}
	plain := &tasker.TaskRequest{Tags: []string{"a"}}
	out := tracing.TagRequest(context.Background(), plain, true)
	p, ok := tracectx.FromTags(out.Tags)
	if !ok || p.SpanID.IsValid() || !p.Flags.IsSampled() || len(plain.Tags) != 1 {
		t.Errorf("new trace: tags %q (caller's %q)", out.Tags, plain.Tags)
	}
	if out := tracing.TagRequest(context.Background(), plain, false); out != plain {
		t.Error("a request was tagged without a trace and without tracing")
	}
}

// TestExternalStepTraceParent: the pull API hands an external worker the
// attempt's traceparent.
func TestExternalStepTraceParent(t *testing.T) {
	ctx := context.Background()
	exp := tracetest.NewInMemoryExporter()
	c, err := tasker.Open(ctx, tasker.Config{DatabaseURL: "sqlite:" + testdb.SQLitePath(t), TemplatesDir: t.TempDir(),
		EventEnqueue: true, TraceExporter: keepOnShutdown{exp}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.AddTemplate("ext.yml", []byte("name: ext\nstep_templates:\n  - name: rb\n    handler_class: RubyHandler\n")); err != nil {
		t.Fatal(err)
	}
	task, _, err := c.InitializeTask(tracectx.ContextWithTraceParent(ctx, callerTP), &tasker.TaskRequest{Namespace: "default", Name: "ext"})
	if err != nil {
		t.Fatal(err)
	}
	claim, err := c.Worker().ClaimSteps(ctx, tasker.ClaimParams{TaskID: task.ID, Owner: "ruby-worker", Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(claim.Steps) != 1 {
		t.Fatalf("claimed %d steps", len(claim.Steps))
	}
	st := claim.Steps[0]
	tid := mustTraceID(t, callerTrace)
	want := "00-" + callerTrace + "-" + tracectx.AttemptSpanID(tid, task.ID, st.StepID, 1).String() + "-01"
	if st.TraceParent != want {
		t.Errorf("external step traceparent %q, want %q", st.TraceParent, want)
	}
	b, _ := json.Marshal(st)
	if !strings.Contains(string(b), `"traceparent":"`+want+`"`) {
		t.Errorf("payload lacks traceparent: %s", b)
	}
}
