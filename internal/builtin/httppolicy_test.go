package builtin

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// recorder is a test server that remembers the requests it got.
type recorder struct {
	mu   sync.Mutex
	reqs []*http.Request
}

func (rc *recorder) add(r *http.Request) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.reqs = append(rc.reqs, r.Clone(r.Context()))
}

func (rc *recorder) all() []*http.Request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]*http.Request(nil), rc.reqs...)
}

// A context value cannot leave its path segment or add query parameters:
// "../../admin" stays one segment, "&role=root" stays one value.
func TestHTTPURLInterpolationEscaped(t *testing.T) {
	t.Parallel()
	rc := &recorder{}
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		rc.add(r)
		_, _ = io.WriteString(w, `{}`)
	})
	step := newStep("esc", map[string]any{
		"url": srv.URL + "/orders/${context.id}/items?ref=${context.q}&n=${context.n}",
	})
	step.Context = json.RawMessage(`{"id":"../../admin","q":"x&role=root#frag","n":7}`)
	_, err := run(t, Options{}, HTTPName, step)
	require.NoError(t, err)
	reqs := rc.all()
	require.Len(t, reqs, 1)
	require.Equal(t, "/orders/..%2F..%2Fadmin/items?ref=x%26role%3Droot%23frag&n=7", reqs[0].RequestURI)
	require.Equal(t, url.Values{"ref": {"x&role=root#frag"}, "n": {"7"}}, reqs[0].URL.Query())

	// A value that is a whole dot segment is refused before any request.
	step = newStep("dots", map[string]any{"url": srv.URL + "/orders/${context.id}"})
	step.Context = json.RawMessage(`{"id":".."}`)
	_, err = run(t, Options{}, HTTPName, step)
	requirePermanent(t, err)
	require.Contains(t, err.Error(), `handler_config.url: the value of ${context.id} ("..") would be a "." or ".." path segment`)
	require.Len(t, rc.all(), 1)

	// Before the path only host-name characters pass, unless ${raw:...}.
	step = newStep("base", map[string]any{"url": "${context.base}/orders/${context.id}"})
	step.Context = json.RawMessage(`{"base":"` + srv.URL + `/api","id":"a b/c"}`)
	_, err = run(t, Options{}, HTTPName, step)
	requirePermanent(t, err)
	require.Contains(t, err.Error(), "cannot go into the scheme or host of the URL")
	require.Contains(t, err.Error(), "${raw:REF}")

	step.HandlerConfig = map[string]any{"url": "${raw:context.base}/orders/${context.id}?x=${raw:context.raw}"}
	step.Context = json.RawMessage(`{"base":"` + srv.URL + `/api","id":"a b/c","raw":"1&y=2"}`)
	_, err = run(t, Options{}, HTTPName, step)
	require.NoError(t, err)
	reqs = rc.all()
	require.Len(t, reqs, 2)
	require.Equal(t, "/api/orders/a%20b%2Fc?x=1&y=2", reqs[1].RequestURI)

	// A host label from the context is fine.
	u, _ := url.Parse(srv.URL)
	step = newStep("host", map[string]any{"url": "http://${context.host}:${context.port}/ok"})
	step.Context = json.RawMessage(`{"host":"127.0.0.1","port":"` + u.Port() + `"}`)
	_, err = run(t, Options{}, HTTPName, step)
	require.NoError(t, err)
	require.Len(t, rc.all(), 3)
}

// A redirect to another port is refused by default, and never carries the
// step's headers when it is allowed.
func TestHTTPRedirectToOtherPort(t *testing.T) {
	t.Parallel()
	other := &recorder{}
	otherSrv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		other.add(r)
		_, _ = io.WriteString(w, `{"internal":true}`)
	})
	home := &recorder{}
	homeSrv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		home.add(r)
		switch r.URL.Path {
		case "/away":
			http.Redirect(w, r, otherSrv.URL+"/admin", http.StatusFound)
		case "/here":
			http.Redirect(w, r, "/final", http.StatusFound)
		default:
			_, _ = io.WriteString(w, `{"final":true}`)
		}
	})
	cfg := func(path string, extra map[string]any) map[string]any {
		m := map[string]any{"url": homeSrv.URL + path, "headers": map[string]any{"X-Api-Key": "k-secret", "Authorization": "Bearer b-secret"}}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}

	_, err := run(t, Options{}, HTTPName, newStep("r", cfg("/away", nil)))
	requirePermanent(t, err)
	require.Contains(t, err.Error(), "HTTP 302 redirect to another host or port refused: "+otherSrv.URL+"/admin")
	require.Contains(t, err.Error(), `handler_config.redirects to "any"`)
	require.Empty(t, other.all(), "the other server is never contacted")

	// Same origin: followed, headers kept.
	got, err := run(t, Options{}, HTTPName, newStep("r", cfg("/here", nil)))
	require.NoError(t, err)
	require.Equal(t, decode(t, `{"final":true}`), normalize(t, got))
	reqs := home.all()
	require.Equal(t, "k-secret", reqs[len(reqs)-1].Header.Get("X-Api-Key"))

	// "none": not even the same origin.
	_, err = run(t, Options{}, HTTPName, newStep("r", cfg("/here", map[string]any{"redirects": "none"})))
	requirePermanent(t, err)
	require.Contains(t, err.Error(), `not followed (handler_config.redirects is "none")`)

	// "any": followed, without the step's headers.
	got, err = run(t, Options{}, HTTPName, newStep("r", cfg("/away", map[string]any{"redirects": "any"})))
	require.NoError(t, err)
	require.Equal(t, decode(t, `{"internal":true}`), normalize(t, got))
	reqs = other.all()
	require.Len(t, reqs, 1)
	require.Empty(t, reqs[0].Header.Get("X-Api-Key"))
	require.Empty(t, reqs[0].Header.Get("Authorization"))

	// "any" still obeys the allow-lists at every hop.
	_, err = run(t, Options{}, HTTPName, newStep("r", cfg("/away", map[string]any{
		"redirects": "any", "allowed_hosts": []any{strings.TrimPrefix(homeSrv.URL, "http://")},
	})))
	requirePermanent(t, err)
	require.Contains(t, err.Error(), "is not in handler_config.allowed_hosts")
	require.Len(t, other.all(), 1)
}

// stallServer accepts connections and reads the request, then sends
// prefix (possibly nothing) and never anything more.
func stallServer(t *testing.T, prefix string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				buf := make([]byte, 4096)
				_, _ = c.Read(buf)
				_, _ = io.WriteString(c, prefix)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// A server that accepts and never answers, or stops in the middle of the
// body, fails the attempt at its deadline: timeout_seconds, or the default
// timeout when the step sets none.
func TestHTTPTotalDeadline(t *testing.T) {
	t.Parallel()
	noHeaders := stallServer(t, "")
	halfBody := stallServer(t, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"partial\":")

	for _, u := range []string{noHeaders, halfBody} {
		start := time.Now()
		_, err := run(t, Options{}, HTTPName, newStep("stall", map[string]any{"url": u + "/x", "timeout_seconds": 0.4}))
		elapsed := time.Since(start)
		requireRetryable(t, err)
		require.Contains(t, err.Error(), "timed out after 400ms (handler_config.timeout_seconds)")
		require.GreaterOrEqual(t, elapsed, 400*time.Millisecond)
		require.Less(t, elapsed, 10*time.Second)
	}

	// No timeout_seconds and no step deadline: the process default applies.
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		_, err := runCtx(context.Background(), t, Options{HTTPTimeout: 300 * time.Millisecond}, HTTPName,
			newStep("stall", map[string]any{"url": noHeaders}))
		errc <- err
	}()
	select {
	case err := <-errc:
		requireRetryable(t, err)
		require.Contains(t, err.Error(), "timed out after 300ms (the default deadline")
		require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
	case <-time.After(20 * time.Second):
		t.Fatal("a server that never answers held the attempt past the default deadline")
	}
}

// A body larger than max_response_bytes fails with the cap error without
// being read to its end.
func TestHTTPMaxResponseBytes(t *testing.T) {
	t.Parallel()
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		chunk := strings.Repeat("z", 32<<10)
		for r.Context().Err() == nil { // endless
			if _, err := io.WriteString(w, chunk); err != nil {
				return
			}
		}
	})
	_, err := run(t, Options{}, HTTPName, newStep("huge", map[string]any{"url": srv.URL, "max_response_bytes": 65536}))
	requirePermanent(t, err)
	require.Contains(t, err.Error(), "response body exceeds the limit of 65536 bytes (handler_config.max_response_bytes)")

	// The process limit is the default and the ceiling.
	_, err = run(t, Options{MaxResponseBytes: 1 << 20}, HTTPName, newStep("huge", map[string]any{"url": srv.URL}))
	requirePermanent(t, err)
	require.Contains(t, err.Error(), "exceeds the limit of 1048576 bytes")
	_, err = run(t, Options{MaxResponseBytes: 1 << 20}, HTTPName, newStep("huge", map[string]any{"url": srv.URL, "max_response_bytes": 2 << 20}))
	requirePermanent(t, err)
	require.Contains(t, err.Error(), "handler_config.max_response_bytes: 2.097152e+06 exceeds this process's limit of 1048576 bytes")
}

// allowed_hosts and Options.HTTPAllowedHosts refuse other destinations
// before any connection.
func TestHTTPAllowedHosts(t *testing.T) {
	t.Parallel()
	rc := &recorder{}
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		rc.add(r)
		_, _ = io.WriteString(w, `{}`)
	})
	hostPort := strings.TrimPrefix(srv.URL, "http://")

	_, err := run(t, Options{}, HTTPName, newStep("a", map[string]any{"url": srv.URL, "allowed_hosts": []any{"api.example.com", "*.example.com"}}))
	requirePermanent(t, err)
	require.Contains(t, err.Error(), `host "`+hostPort+`" is not in handler_config.allowed_hosts`)
	_, err = run(t, Options{HTTPAllowedHosts: []string{"localhost"}}, HTTPName, newStep("a", map[string]any{"url": srv.URL}))
	requirePermanent(t, err)
	require.Contains(t, err.Error(), "is not in this process's allow-list")
	_, err = run(t, Options{HTTPAllowedHosts: []string{"127.0.0.1:1"}}, HTTPName, newStep("a", map[string]any{"url": srv.URL}))
	requirePermanent(t, err)
	require.Empty(t, rc.all())

	for _, opts := range []Options{{}, {HTTPAllowedHosts: []string{hostPort}}, {HTTPAllowedHosts: []string{"*"}}} {
		_, err = run(t, opts, HTTPName, newStep("a", map[string]any{"url": srv.URL, "allowed_hosts": []any{"127.0.0.1"}}))
		require.NoError(t, err)
	}
	require.Len(t, rc.all(), 3)

	// A bad process list fails every attempt, with the reason.
	_, err = run(t, Options{HTTPAllowedHosts: []string{"http://x/"}}, HTTPName, newStep("a", map[string]any{"url": srv.URL}))
	requirePermanent(t, err)
	require.Contains(t, err.Error(), "Options.HTTPAllowedHosts")
}

// The environment variable is the process-wide list when Options has none.
func TestHTTPAllowedHostsFromEnvironment(t *testing.T) {
	t.Setenv(EnvHTTPAllowedHosts, "api.example.com, *.example.org")
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, `{}`) })
	_, err := run(t, Options{}, HTTPName, newStep("a", map[string]any{"url": srv.URL}))
	requirePermanent(t, err)
	require.Contains(t, err.Error(), "not in this process's allow-list ("+EnvHTTPAllowedHosts+")")
	_, err = run(t, Options{HTTPAllowedHosts: []string{}}, HTTPName, newStep("a", map[string]any{"url": srv.URL}))
	requirePermanent(t, err) // an empty list in Options allows nothing
	t.Setenv(EnvHTTPAllowedHosts, "127.0.0.1")
	_, err = run(t, Options{}, HTTPName, newStep("a", map[string]any{"url": srv.URL}))
	require.NoError(t, err)
}

func TestHostPatterns(t *testing.T) {
	t.Parallel()
	u := func(s string) *url.URL {
		p, err := url.Parse(s)
		require.NoError(t, err)
		return p
	}
	tests := []struct {
		pattern, url string
		want         bool
	}{
		{"api.example.com", "https://API.example.com./x", true},
		{"api.example.com", "https://example.com/", false},
		{"*.example.com", "https://a.b.example.com/", true},
		{"*.example.com", "https://example.com/", false},
		{"*.example.com", "https://badexample.com/", false},
		{"api.example.com:8443", "https://api.example.com:8443/", true},
		{"api.example.com:443", "https://api.example.com/", true},
		{"api.example.com:443", "http://api.example.com/", false},
		{"[::1]", "http://[::1]:9000/", true},
		{"[::1]:9000", "http://[::1]:9000/", true},
		{"::1", "http://[::1]/", true},
		{"*", "http://anything:1/", true},
		{"*:8080", "http://anything:8080/", true},
		{"*:8080", "http://anything/", false},
	}
	for _, tc := range tests {
		p, err := parseHostPattern(tc.pattern)
		require.NoError(t, err, tc.pattern)
		require.Equal(t, tc.want, p.matches(u(tc.url)), "%s vs %s", tc.pattern, tc.url)
	}
	for _, bad := range []string{"", "http://x", "a/b", "x:", "x:port", "a*.b", "*x.com", "a.*.com", "u@h"} {
		_, err := parseHostPattern(bad)
		require.Error(t, err, bad)
	}
}

func TestHTTPPolicyBadConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg map[string]any
		msg string
	}{
		{map[string]any{"redirects": "sometimes"}, `handler_config.redirects: must be "same_origin", "none" or "any"`},
		{map[string]any{"allowed_hosts": "x"}, "handler_config.allowed_hosts: must be a list"},
		{map[string]any{"allowed_hosts": []any{"ok.com", 5}}, "handler_config.allowed_hosts[1]: must be a host name"},
		{map[string]any{"allowed_hosts": []any{"http://x"}}, "handler_config.allowed_hosts[0]"},
		{map[string]any{"max_response_bytes": 0}, "handler_config.max_response_bytes: must be a positive whole number"},
		{map[string]any{"max_response_bytes": 1.5}, "handler_config.max_response_bytes: must be a positive whole number"},
	} {
		tc.cfg["url"] = "http://h"
		_, err := run(t, Options{}, HTTPName, newStep("bad", tc.cfg))
		requirePermanent(t, err)
		require.Contains(t, err.Error(), tc.msg)
	}
}
