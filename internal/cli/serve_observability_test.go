package cli

import (
	"bytes"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestServeMetrics: /metrics is served on the API's listener behind its
// token, and --metrics=false turns it off.
func TestServeMetrics(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("metrics-token\n"), 0o600))
	s := startServe(t, "--token-file", tokenFile)
	code, _ := get(t, "http://"+s.addr+"/metrics", "")
	require.Equal(t, http.StatusUnauthorized, code)
	code, body := get(t, "http://"+s.addr+"/metrics", "metrics-token")
	require.Equal(t, http.StatusOK, code)
	for _, name := range []string{"tasker_queue_tasks 0", "tasker_events_dropped_total 0", "go_goroutines", "process_cpu_seconds_total",
		`tasker_db_call_duration_seconds_count{operation="queue_claim"}`} {
		require.Contains(t, body, name)
	}
	code, _ = get(t, "http://"+s.addr+"/health/live", "")
	require.Equal(t, http.StatusOK, code, "health stays open")

	off := startServe(t, "--metrics=false")
	code, body = get(t, "http://"+off.addr+"/metrics", "")
	require.Equal(t, http.StatusNotFound, code, body)
}

// TestServeTraces: with OTEL_EXPORTER_OTLP_ENDPOINT set, serve exports the
// spans of a task created with a traceparent to the OTLP receiver.
func TestServeTraces(t *testing.T) {
	var mu sync.Mutex
	spans := map[string][]byte{} // name -> trace id
	recv := http.NewServeMux()
	recv.HandleFunc("POST /v1/traces", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var req collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		mu.Lock()
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				for _, sp := range ss.GetSpans() {
					spans[sp.GetName()] = sp.GetTraceId()
				}
			}
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	})
	srv := httptest.NewServer(recv) // 127.0.0.1, a free port
	defer srv.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "50")

	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "t.yml"), []byte("name: traced\nstep_templates:\n  - name: a\n    handler_class: tasker:noop\n"), 0o600))
	s := startServe(t, "--templates", dir)
	require.Contains(t, s.stderr.String(), "exporting OpenTelemetry traces")

	const traceID = "0af7651916cd43dd8448eb211c80319c"
	req, err := http.NewRequest(http.MethodPost, "http://"+s.addr+"/v1/tasks",
		strings.NewReader(`{"namespace":"default","name":"traced"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("traceparent", "00-"+traceID+"-b7ad6b7169203331-01")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)

	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		task, step := spans["task default/traced"], spans["step a"]
		mu.Unlock()
		if task != nil && step != nil {
			want, _ := hex.DecodeString(traceID)
			require.True(t, bytes.Equal(task, want), "task span trace %x", task)
			require.True(t, bytes.Equal(step, want), "step span trace %x", step)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no task and step spans received (got %v); log:\n%s", spans, s.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
