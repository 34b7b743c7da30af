package cli

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"github.com/tasker-systems/tasker/internal/testlog"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// served is a `tasker serve` running in this process.
type served struct {
	addr   string
	stderr *testlog.Buffer
	stop   func() int
}

var listenRE = regexp.MustCompile(`listen=(\S+)`)

// startServe runs `tasker serve` on a fresh SQLite file and a free loopback
// port, with the extra flags, and waits until it listens.
func startServe(t *testing.T, extra ...string) *served {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, "templates"), 0o700))
	args := append([]string{"serve", "--listen", "127.0.0.1:0", "--workers", "1", "--shutdown-timeout", "2s",
		"--database-url", "sqlite:" + filepath.Join(dir, "t.db"), "--templates", filepath.Join(dir, "templates")}, extra...)
	ctx, cancel := context.WithCancel(context.Background())
	stderr := &testlog.Buffer{}
	exited := make(chan struct{})
	code := 0
	go func() {
		defer close(exited)
		code = Main(ctx, args, Options{Stdout: io.Discard, Stderr: stderr})
	}()
	s := &served{stderr: stderr}
	s.stop = func() int {
		cancel()
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Errorf("serve did not stop; log:\n%s", stderr.String())
		}
		return code
	}
	t.Cleanup(func() { s.stop() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := listenRE.FindStringSubmatch(stderr.String()); m != nil {
			s.addr = m[1]
			return s
		}
		select {
		case <-exited:
			t.Fatalf("serve exited with %d:\n%s", code, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start; log:\n%s", stderr.String())
		}
	}
}

// closedWithin reads conn until the server closes it, failing the test if
// that takes longer than limit; it returns what was read and how long it
// took.
func closedWithin(t *testing.T, conn net.Conn, limit time.Duration) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	require.NoError(t, conn.SetReadDeadline(start.Add(limit)))
	b, err := io.ReadAll(conn)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the server held the connection for %s (read so far: %q)", limit, b)
	}
	return string(b), time.Since(start)
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// TestServeCutsSlowClients: a client that sends its headers and then
// dribbles or never sends the body, or never finishes its headers, or
// stays idle, is disconnected at the configured timeout; before, only slow
// headers were cut (at 10 s) and a missing body held the connection for
// good.
func TestServeCutsSlowClients(t *testing.T) {
	t.Parallel()
	const limit = 10 * time.Second // generous: the timeouts are 300 ms
	s := startServe(t, "--read-timeout", "300ms", "--read-header-timeout", "300ms", "--idle-timeout", "300ms")

	t.Run("absent body", func(t *testing.T) {
		conn := dial(t, s.addr)
		_, err := io.WriteString(conn, "POST /v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
		require.NoError(t, err)
		got, took := closedWithin(t, conn, limit)
		require.GreaterOrEqual(t, took, 200*time.Millisecond, "cut before the read timeout: %q", got)
	})
	t.Run("dribbled body", func(t *testing.T) {
		conn := dial(t, s.addr)
		_, err := io.WriteString(conn, "POST /v1/rpc/ping HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
		require.NoError(t, err)
		stop := make(chan struct{})
		defer close(stop)
		go func() { // one byte every 20 ms, until the server hangs up
			for {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				if _, err := conn.Write([]byte(" ")); err != nil {
					return
				}
			}
		}()
		closedWithin(t, conn, limit)
	})
	t.Run("slow headers", func(t *testing.T) {
		conn := dial(t, s.addr)
		_, err := io.WriteString(conn, "GET /health/live HTTP/1.1\r\nHost: x\r\n")
		require.NoError(t, err)
		closedWithin(t, conn, limit)
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		conn := dial(t, s.addr)
		_, err := io.WriteString(conn, "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		got, _ := closedWithin(t, conn, limit)
		require.True(t, strings.HasPrefix(got, "HTTP/1.1 200"), got)
	})
}

// TestServeLongPollOutlivesTimeouts: events_poll waits longer than the
// read and write timeouts and still answers (its handler lifts the
// deadlines once the body is read).
func TestServeLongPollOutlivesTimeouts(t *testing.T) {
	t.Parallel()
	s := startServe(t, "--read-timeout", "300ms", "--write-timeout", "300ms")
	post := func(method, body string) (int, string) {
		res, err := http.Post("http://"+s.addr+"/v1/rpc/"+method, "application/json", strings.NewReader(body))
		require.NoError(t, err, "%s: the server dropped the request", method)
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		require.NoError(t, err, method)
		return res.StatusCode, string(b)
	}
	code, body := post("events_subscribe", `{}`)
	require.Equal(t, 200, code, body)
	id := regexp.MustCompile(`"subscription_id":"([^"]+)"`).FindStringSubmatch(body)
	require.NotNil(t, id, body)
	start := time.Now()
	code, body = post("events_poll", fmt.Sprintf(`{"subscription_id": %q, "wait_ms": 1200}`, id[1]))
	require.Equal(t, 200, code, body)
	require.GreaterOrEqual(t, time.Since(start), time.Second, "the poll did not wait: %s", body)
	require.Contains(t, body, `"events":[]`)
}

// TestServeLimitsHeadersAndConnections: a header section over
// --max-header-bytes is refused with 431, and connection N+1 beyond
// --max-connections is not served until one of the first N closes.
func TestServeLimitsHeadersAndConnections(t *testing.T) {
	t.Parallel()
	s := startServe(t, "--max-header-bytes", "4096", "--max-connections", "2")

	conn := dial(t, s.addr)
	_, err := io.WriteString(conn, "GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 64<<10)+"\r\n\r\n")
	require.NoError(t, err)
	got, _ := closedWithin(t, conn, 10*time.Second)
	require.True(t, strings.HasPrefix(got, "HTTP/1.1 431"), "%.200s", got)

	// Two connections hold both slots, each after one served request.
	var held []net.Conn
	for range 2 {
		c := dial(t, s.addr)
		_, err := io.WriteString(c, "GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		require.Equal(t, 200, res.StatusCode)
		held = append(held, c)
	}
	third := dial(t, s.addr)
	_, err = io.WriteString(third, "GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, third.SetReadDeadline(time.Now().Add(500*time.Millisecond)))
	n, err := third.Read(make([]byte, 1))
	require.Zero(t, n, "connection 3 was served while 2 were open")
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)

	require.NoError(t, held[0].Close())
	got, _ = closedWithin(t, third, 10*time.Second)
	require.True(t, strings.HasPrefix(got, "HTTP/1.1 200"), "connection 3 once a slot freed: %q", got)
}

func TestServeToken(t *testing.T) {
	get := func(s *served, token string) int {
		req, err := http.NewRequest("GET", "http://"+s.addr+"/v1/info", nil)
		require.NoError(t, err)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = res.Body.Close()
		return res.StatusCode
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(file, []byte("  from-file-s3cr3t \nignored\n"), 0o600))

	t.Setenv(EnvToken, "")
	t.Setenv(EnvAPIToken, "")
	s := startServe(t, "--token-file", file)
	require.Equal(t, 401, get(s, ""))
	require.Equal(t, 401, get(s, "ignored"))
	require.Equal(t, 200, get(s, "from-file-s3cr3t"))
	require.NotContains(t, s.stderr.String(), "in ps")
	s.stop()

	t.Setenv(EnvToken, "env-s3cr3t")
	t.Setenv(EnvAPIToken, "older-env")
	s = startServe(t)
	require.Equal(t, 401, get(s, "older-env"), "$TASKER_TOKEN wins over $TASKER_API_TOKEN")
	require.Equal(t, 200, get(s, "env-s3cr3t"))
	s.stop()

	s = startServe(t, "--token", "flag-s3cr3t")
	require.Equal(t, 200, get(s, "flag-s3cr3t"), "--token wins over the environment")
	require.Contains(t, s.stderr.String(), "can read in ps", "a --token on the command line is warned about")
	s.stop()

	for _, args := range [][]string{
		{"--token", "x", "--token-file", file},
		{"--token-file", filepath.Join(dir, "missing")},
		{"--token-file", filepath.Join(dir, "empty")},
		{"--read-timeout", "0s"},
		{"--max-connections", "0"},
	} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "empty"), []byte("\n"), 0o600))
		var errw bytes.Buffer
		code := Main(context.Background(), append([]string{"serve", "--listen", "127.0.0.1:0",
			"--database-url", "sqlite:" + filepath.Join(dir, "u.db")}, args...), Options{Stdout: io.Discard, Stderr: &errw})
		require.Equal(t, ExitUsage, code, "%v: %s", args, errw.String())
	}
}

// TestErrorsHidePasswords: every message of the CLI about a database, for
// every form of connection string, keeps no password.
func TestErrorsHidePasswords(t *testing.T) {
	t.Parallel()
	for _, dsn := range []string{
		"host=127.0.0.1 port=1 user=u password=s3cr3t dbname=db",
		"host=127.0.0.1 password = 's3cr3t with \\' quote' sslpassword=an0ther",
		"postgres://u:s3cr3t@127.0.0.1:notaport/db?password=an0ther",
		"postgres://u:s3cr%zzt@127.0.0.1/db?sslpassword=an0ther",
		"postgres://u:s3cr3t@127.0.0.1:1/db?sslpassword=an0ther&connect_timeout=2&sslmode=disable",
		"postgresql://127.0.0.1:1/db?password=s3cr3t&sslmode=bogus",
	} {
		for _, cmd := range [][]string{{"task", "list"}, {"migrate", "status"}} {
			var out, errw bytes.Buffer
			code := Main(context.Background(), append([]string{"--database-url", dsn}, cmd...),
				Options{Stdout: &out, Stderr: &errw})
			require.NotEqual(t, ExitOK, code, "%s %v", dsn, cmd)
			for _, secret := range []string{"s3cr3t", "an0ther", "s3cr%zzt", "with \\' quote"} {
				require.NotContains(t, errw.String()+out.String(), secret, "%s %v", dsn, cmd)
			}
			require.Contains(t, errw.String(), "tasker: ", "%s %v", dsn, cmd)
		}
	}
}
