package builtin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// serve starts a test server running h and closes it with the test.
func serve(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestHTTP200JSON(t *testing.T) {
	t.Parallel()
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || r.URL.Path != "/items" {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusTeapot)
			return
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = io.WriteString(w, `{"id": 7, "items": [1, 2], "big": 12345678901234567890}`+"\n")
	})
	got, err := run(t, Options{}, HTTPName, newStep("get", map[string]any{"url": srv.URL + "/items"}))
	require.NoError(t, err)
	raw, ok := got.(json.RawMessage)
	require.True(t, ok, "%T", got)
	require.JSONEq(t, `{"id":7,"items":[1,2],"big":12345678901234567890}`, string(raw))
	require.Contains(t, string(raw), "12345678901234567890", "numbers are kept exactly")
}

func TestHTTP200Text(t *testing.T) {
	t.Parallel()
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "hello, world")
	})
	got, err := run(t, Options{}, HTTPName, newStep("get", map[string]any{"url": srv.URL}))
	require.NoError(t, err)
	require.Equal(t, decode(t, `{"status":200,"body":"hello, world"}`), normalize(t, got))
}

func TestHTTPJSONWithoutContentType(t *testing.T) {
	t.Parallel()
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, `[1,"a"]`)
	})
	got, err := run(t, Options{}, HTTPName, newStep("get", map[string]any{"url": srv.URL}))
	require.NoError(t, err)
	require.Equal(t, decode(t, `[1,"a"]`), normalize(t, got))
}

func TestHTTP201Templated(t *testing.T) {
	t.Parallel()
	type received struct {
		method, path, ctype, auth, attempt, host string
		query                                    map[string][]string
		body                                     any
	}
	var (
		mu  sync.Mutex
		got []received
	)
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		var body any
		_ = json.Unmarshal(data, &body)
		mu.Lock()
		got = append(got, received{
			method: r.Method, path: r.URL.Path, ctype: r.Header.Get("Content-Type"),
			auth: r.Header.Get("Authorization"), attempt: r.Header.Get("X-Attempt"),
			query: r.URL.Query(), body: body,
		})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"created":true}`)
	})
	step := newStep("create", map[string]any{
		"url": srv.URL + "/orders/${context.order.id}?src=tasker",
		"query": map[string]any{
			"customer": "${context.customer}",
			"tag":      "${context.order.tags}", // a list: one value each
		},
		"headers": map[string]any{
			"Authorization": "Bearer ${steps.auth.token}",
			"X-Attempt":     "${step.attempt}",
		},
		"body": map[string]any{
			"order":   "${context.order}",
			"total":   "${steps.price.total}",
			"note":    "order ${context.order.id} for ${context.customer}",
			"line":    "${steps.price.lines.1}",
			"literal": []any{1, true, nil, "plain"},
			"task":    "${task.id}",
		},
	})
	res, err := run(t, Options{}, HTTPName, step)
	require.NoError(t, err)
	require.Equal(t, decode(t, `{"created":true}`), normalize(t, res))

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, 1)
	r := got[0]
	require.Equal(t, http.MethodPost, r.method, "a body implies POST")
	require.Equal(t, "/orders/1001", r.path)
	require.Equal(t, "application/json", r.ctype)
	require.Equal(t, "Bearer tok-123", r.auth)
	require.Equal(t, "1", r.attempt)
	require.Equal(t, map[string][]string{"src": {"tasker"}, "customer": {"ann"}, "tag": {"x", "y"}}, r.query)
	require.Equal(t, decode(t, `{
		"order": {"id": 1001, "sku": "A-17", "tags": ["x", "y"]},
		"total": 19.5,
		"note": "order 1001 for ann",
		"line": {"sku": "B-2", "qty": 1},
		"literal": [1, true, null, "plain"],
		"task": 42
	}`), r.body)
}

func TestHTTPMethodAndHeaders(t *testing.T) {
	t.Parallel()
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		data, _ := io.ReadAll(r.Body)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"method": r.Method, "ctype": r.Header.Get("Content-Type"),
			"accept": r.Header.Get("Accept"), "body": string(data),
		})
	})
	got, err := run(t, Options{}, HTTPName, newStep("put", map[string]any{
		"url": srv.URL, "method": "put", "body": "${context.customer}",
		"headers":     map[string]any{"Content-Type": "application/vnd.x+json"},
		"expect_json": true,
	}))
	require.NoError(t, err)
	require.Equal(t, decode(t, `{"method":"PUT","ctype":"application/vnd.x+json","accept":"application/json","body":"\"ann\""}`), normalize(t, got))
}

func TestHTTPPermanentStatuses(t *testing.T) {
	t.Parallel()
	for _, code := range []int{400, 401, 403, 404, 409, 422} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			t.Parallel()
			srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(code)
				_, _ = fmt.Fprintf(w, "nope %d", code)
			})
			_, err := run(t, Options{}, HTTPName, newStep("call", map[string]any{"url": srv.URL + "/thing", "method": "DELETE"}))
			requirePermanent(t, err)
			msg := err.Error()
			require.Contains(t, msg, `tasker:http: step "call": DELETE `+srv.URL+"/thing")
			require.Contains(t, msg, fmt.Sprintf("HTTP %d %s", code, http.StatusText(code)))
			require.Contains(t, msg, fmt.Sprintf("nope %d", code))
		})
	}
}

func TestHTTP429RetryAfterSeconds(t *testing.T) {
	t.Parallel()
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, "slow down")
	})
	_, err := run(t, Options{}, HTTPName, newStep("call", map[string]any{"url": srv.URL}))
	re := requireRetryable(t, err)
	require.Equal(t, 7*time.Second, re.After)
	require.Contains(t, err.Error(), "HTTP 429 Too Many Requests: slow down")
}

func TestHTTP503RetryAfterDate(t *testing.T) {
	t.Parallel()
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", time.Now().Add(30*time.Second).UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	_, err := run(t, Options{}, HTTPName, newStep("call", map[string]any{"url": srv.URL}))
	re := requireRetryable(t, err)
	require.InDelta(t, (30 * time.Second).Seconds(), re.After.Seconds(), 2)
	require.Contains(t, err.Error(), "HTTP 503 Service Unavailable")
}

func TestHTTP503WithoutRetryAfter(t *testing.T) {
	t.Parallel()
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	_, err := run(t, Options{}, HTTPName, newStep("call", map[string]any{"url": srv.URL}))
	re := requireRetryable(t, err)
	require.Zero(t, re.After)
}

func TestHTTP500Retryable(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 2000)
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom "+long, http.StatusInternalServerError)
	})
	_, err := run(t, Options{}, HTTPName, newStep("call", map[string]any{"url": srv.URL}))
	re := requireRetryable(t, err)
	require.Zero(t, re.After)
	require.Contains(t, err.Error(), "HTTP 500 Internal Server Error: boom xxx")
	require.Less(t, len(err.Error()), 700, "only the start of the body is quoted")
}

func TestHTTPStatusOverrides(t *testing.T) {
	t.Parallel()
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		w.Header().Set("Retry-After", "3")
		w.WriteHeader(code)
	})
	step := func(code int) map[string]any {
		return map[string]any{
			"url":                srv.URL,
			"query":              map[string]any{"code": code},
			"retryable_statuses": []any{202, 408},
			"permanent_statuses": []any{json.Number("503")},
		}
	}
	_, err := run(t, Options{}, HTTPName, newStep("poll", step(202)))
	re := requireRetryable(t, err)
	require.Equal(t, 3*time.Second, re.After)
	_, err = run(t, Options{}, HTTPName, newStep("poll", step(408)))
	requireRetryable(t, err)
	_, err = run(t, Options{}, HTTPName, newStep("poll", step(503)))
	requirePermanent(t, err)
	got, err := run(t, Options{}, HTTPName, newStep("poll", step(204)))
	require.NoError(t, err)
	require.Equal(t, decode(t, `{"status":204,"body":""}`), normalize(t, got))
}

func TestHTTPConnectionRefused(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	_, err = run(t, Options{}, HTTPName, newStep("call", map[string]any{
		"url": "http://bob:hunter2@" + addr + "/hook?api_key=SEKRIT",
	}))
	requireRetryable(t, err)
	msg := err.Error()
	require.Contains(t, msg, "GET http://"+addr+"/hook")
	require.Contains(t, msg, "connection refused")
	for _, secret := range []string{"hunter2", "bob", "SEKRIT", "api_key"} {
		require.NotContains(t, msg, secret)
	}
}

func TestHTTPTimeout(t *testing.T) {
	t.Parallel()
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	start := time.Now()
	_, err := run(t, Options{}, HTTPName, newStep("slow", map[string]any{"url": srv.URL + "/slow?token=abc", "timeout_seconds": 0.2}))
	requireRetryable(t, err)
	require.Less(t, time.Since(start), 3*time.Second)
	require.Contains(t, err.Error(), "timed out after 200ms")
	require.NotContains(t, err.Error(), "token=abc")

	// A deadline on the step's context works the same way.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = runCtx(ctx, t, Options{}, HTTPName, newStep("slow", map[string]any{"url": srv.URL}))
	requireRetryable(t, err)
	require.Less(t, time.Since(start), 3*time.Second)
	require.Contains(t, err.Error(), "timed out")
}

func TestHTTPOversizedResponse(t *testing.T) {
	t.Parallel()
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		chunk := strings.Repeat("a", 1000)
		if r.URL.Query().Has("chunked") {
			for range 5 {
				_, _ = io.WriteString(w, chunk)
				w.(http.Flusher).Flush()
			}
			return
		}
		w.Header().Set("Content-Length", "5000")
		_, _ = io.WriteString(w, strings.Repeat(chunk, 5))
	})
	opts := Options{MaxResponseBytes: 4096}
	for _, u := range []string{srv.URL, srv.URL + "?chunked=1"} {
		_, err := run(t, opts, HTTPName, newStep("big", map[string]any{"url": u}))
		requirePermanent(t, err)
		require.Contains(t, err.Error(), "exceeds the limit of 4096 bytes")
	}
	// HEAD announces a length but has no body.
	got, err := run(t, opts, HTTPName, newStep("big", map[string]any{"url": srv.URL, "method": "HEAD"}))
	require.NoError(t, err)
	require.Equal(t, decode(t, `{"status":200,"body":""}`), normalize(t, got))
	// Exactly at the limit is fine.
	got, err = run(t, Options{MaxResponseBytes: 5000}, HTTPName, newStep("big", map[string]any{"url": srv.URL}))
	require.NoError(t, err)
	require.Len(t, normalize(t, got).(map[string]any)["body"], 5000)
}

func TestHTTPCredentialsNotInErrors(t *testing.T) {
	t.Parallel()
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != "s3cret" {
			http.Error(w, "no basic auth", http.StatusTeapot)
			return
		}
		http.Error(w, "upstream broke", http.StatusBadGateway)
	})
	u := strings.Replace(srv.URL, "http://", "http://alice:s3cret@", 1) + "/api/v1?token=t0ken#frag"
	_, err := run(t, Options{}, HTTPName, newStep("call", map[string]any{"url": u}))
	requireRetryable(t, err)
	msg := err.Error()
	require.Contains(t, msg, "GET "+srv.URL+"/api/v1: HTTP 502 Bad Gateway: upstream broke")
	for _, secret := range []string{"alice", "s3cret", "t0ken", "frag"} {
		require.NotContains(t, msg, secret)
	}
}

func TestHTTPExpectJSON(t *testing.T) {
	t.Parallel()
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		_, _ = io.WriteString(w, "<html>login</html>")
	})
	_, err := run(t, Options{}, HTTPName, newStep("j", map[string]any{"url": srv.URL, "expect_json": true}))
	requirePermanent(t, err)
	require.Contains(t, err.Error(), "expect_json")
}

func TestHTTPBadConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cfg map[string]any
		msg string
	}{
		{nil, `tasker:http: step "bad": handler_config.url: required`},
		{map[string]any{"url": 17}, "handler_config.url: must be a string, got a number"},
		{map[string]any{"url": "ftp://x/y"}, `handler_config.url: must be an http:// or https:// URL, got scheme "ftp"`},
		{map[string]any{"url": "http://"}, "handler_config.url: has no host"},
		{map[string]any{"url": "http://u:pw@h/%zz"}, "handler_config.url: not a valid URL"},
		{map[string]any{"url": "http://h/${context.missing}"}, `handler_config.url: cannot resolve reference ${context.missing}`},
		{map[string]any{"url": "http://h", "body": map[string]any{"a": "${steps.nope.x}"}}, `handler_config.body.a: cannot resolve reference ${steps.nope.x}`},
		{map[string]any{"url": "http://h", "headers": "x"}, "handler_config.headers: must be a map"},
		{map[string]any{"url": "http://h", "headers": map[string]any{"Bad Name": "x"}}, "handler_config.headers"},
		{map[string]any{"url": "http://h", "headers": map[string]any{"X": "a\nb"}}, "handler_config.headers.X"},
		{map[string]any{"url": "http://h", "method": "GE T"}, "handler_config.method"},
		{map[string]any{"url": "http://h", "method": 5}, "handler_config.method: must be a string"},
		{map[string]any{"url": "http://h", "timeout_seconds": "x"}, "handler_config.timeout_seconds: must be a number"},
		{map[string]any{"url": "http://h", "timeout_seconds": 0}, "handler_config.timeout_seconds: must be a positive"},
		{map[string]any{"url": "http://h", "permanent_statuses": 404}, "handler_config.permanent_statuses: must be a list"},
		{map[string]any{"url": "http://h", "retryable_statuses": []any{"x"}}, "handler_config.retryable_statuses[0]"},
		{map[string]any{"url": "http://h", "retryable_statuses": []any{700}}, "700 is not an HTTP status code"},
		{map[string]any{"url": "http://h", "retryable_statuses": []any{409}, "permanent_statuses": []any{409}}, "also listed"},
		{map[string]any{"url": "http://h", "expect_json": "perhaps"}, "handler_config.expect_json: must be a boolean"},
	}
	for _, tc := range tests {
		_, err := run(t, Options{}, HTTPName, newStep("bad", tc.cfg))
		requirePermanent(t, err)
		require.Contains(t, err.Error(), `step "bad"`)
		require.Contains(t, err.Error(), tc.msg)
		require.NotContains(t, err.Error(), "pw@")
	}
}
