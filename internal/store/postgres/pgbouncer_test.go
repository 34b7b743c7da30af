package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker"
	"github.com/tasker-systems/tasker/internal/store/postgres"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/internal/testlog"
)

// startPgBouncer starts Debian's pgbouncer on a free 127.0.0.1 port in
// transaction pooling mode, in front of the test PostgreSQL, with a pool of
// serverConns server connections whose search_path is the test's schema.
// It returns a URL of the pooled database (without pgbouncer=true).
func startPgBouncer(t *testing.T, schemaURL string, serverConns int) string {
	t.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		for _, p := range []string{"/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"} {
			if _, e := os.Stat(p); e == nil {
				bin, err = p, nil
			}
		}
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("pgbouncer not found (Debian package pgbouncer): the transaction-pooling tests must run under CI")
		}
		t.Skip("pgbouncer not found (apt-get install pgbouncer)")
	}
	u, err := url.Parse(schemaURL)
	if err != nil {
		t.Fatal(err)
	}
	schema := u.Query().Get("search_path")
	pgUser := u.User.Username()
	pgPass, _ := u.User.Password()
	dbname := strings.TrimPrefix(u.Path, "/")
	// TCP (postgres://user@127.0.0.1:port/db) or a Unix socket directory
	// (postgres://user@/db?host=/dir&port=N), as scripts/pg-throwaway.sh
	// makes them.
	host, port := u.Hostname(), u.Port()
	if host == "" {
		host = u.Query().Get("host")
	}
	if port == "" {
		port = u.Query().Get("port")
	}
	if port == "" {
		port = "5432"
	}
	dir := t.TempDir()
	var out testlog.Buffer
	for try := 0; ; try++ {
		listenPort := freePort(t)
		conn := fmt.Sprintf("host=%s port=%s dbname=%s user=%s", host, port, dbname, pgUser)
		if pgPass != "" {
			conn += " password=" + pgPass
		}
		conn += fmt.Sprintf(" connect_query='SET search_path TO %s'", schema)
		ini := fmt.Sprintf(`[databases]
tasker = %s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = any
pool_mode = transaction
default_pool_size = %d
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 200
server_reset_query =
ignore_startup_parameters = extra_float_digits,search_path
logfile =
pidfile =
log_connections = 0
log_disconnections = 0
`, conn, listenPort, serverConns)
		if os.Geteuid() == 0 { // pgbouncer refuses to run as root
			if _, err := user.Lookup("postgres"); err == nil {
				ini += "user = postgres\n"
			} else {
				ini += "user = nobody\n"
			}
		}
		path := filepath.Join(dir, "pgbouncer.ini")
		if err := os.WriteFile(path, []byte(ini), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, path)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		bouncerURL := fmt.Sprintf("postgres://%s@127.0.0.1:%d/tasker?sslmode=disable", pgUser, listenPort)
		if ready(bouncerURL, exited) {
			t.Cleanup(func() {
				_ = cmd.Process.Signal(syscall.SIGINT)
				select {
				case <-exited:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill()
					<-exited
				}
				if t.Failed() {
					t.Logf("pgbouncer output:\n%s", out.String())
				}
			})
			return bouncerURL
		}
		_ = cmd.Process.Kill()
		<-exited
		if try == 2 {
			t.Fatalf("pgbouncer did not start:\n%s", out.String())
		}
		t.Logf("pgbouncer did not start (port taken?); retrying:\n%s", out.String())
	}
}

// ready waits until a connection through the pooler runs a statement.
func ready(bouncerURL string, exited <-chan struct{}) bool {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, bouncerURL+"&default_query_exec_mode=simple_protocol")
		if err == nil {
			_, err = conn.Exec(ctx, "SELECT 1")
			_ = conn.Close(ctx)
		}
		cancel()
		if err == nil {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

const bouncerTemplate = `
name: pooled
namespace_name: bouncer
step_templates:
  - name: a
    handler_class: Work
  - name: b
    depends_on_step: a
    handler_class: Work
  - name: c
    depends_on_step: a
    handler_class: Work
  - name: d
    depends_on_steps: [b, c]
    handler_class: Flaky
    default_retry_limit: 3
`

// TestPgBouncerTransactionPooling migrates a schema and runs tasks to
// completion with two clients of four workers each through a real
// pgbouncer in transaction pooling mode with 3 server connections, so that
// consecutive transactions of one client land on different server
// connections.
func TestPgBouncerTransactionPooling(t *testing.T) {
	schemaURL := testdb.PostgresURL(t)
	bouncerURL := startPgBouncer(t, schemaURL, 3)
	ctx := context.Background()

	// Without pgbouncer=true tasker sends jit=off at connect, which
	// PgBouncer 1.18 refuses: the parameter is what makes it work.
	plain, err := postgres.Open(ctx, bouncerURL)
	if err == nil {
		err = plain.Ping(ctx)
		plain.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "unsupported startup parameter") {
		t.Errorf("without pgbouncer=true: %v, want PgBouncer's refusal of the jit startup parameter", err)
	}

	url := bouncerURL + "&" + postgres.PgBouncerParam + "=true"
	st, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Listen(ctx); err == nil || !strings.Contains(err.Error(), "PgBouncer") {
		t.Errorf("Listen behind PgBouncer: %v, want a refusal naming PgBouncer", err)
	}

	const tasks, clients, workers = 24, 2, 4
	var flakyMu sync.Mutex
	flaky := map[int64]int{}
	open := func(owner string) *tasker.Client {
		c, err := tasker.Open(ctx, tasker.Config{DatabaseURL: url, AutoMigrate: true, TemplatesDir: t.TempDir(),
			Owner: owner, PollInterval: 20 * time.Millisecond,
			Backoff: tasker.BackoffConfig{Base: time.Millisecond, Min: time.Millisecond, Max: 5 * time.Millisecond}})
		if err != nil {
			t.Fatalf("open through pgbouncer: %v", err)
		}
		t.Cleanup(func() { _ = c.Close() })
		if _, err := c.AddTemplate("pooled.yml", []byte(bouncerTemplate)); err != nil {
			t.Fatal(err)
		}
		c.RegisterHandler("Work", tasker.StepHandlerFunc(func(ctx context.Context, sc *tasker.StepContext) (any, error) {
			return map[string]any{"step": sc.StepName, "parents": len(sc.DependencyResults)}, nil
		}))
		c.RegisterHandler("Flaky", tasker.StepHandlerFunc(func(ctx context.Context, sc *tasker.StepContext) (any, error) {
			flakyMu.Lock()
			flaky[sc.TaskID]++
			flakyMu.Unlock()
			if sc.Attempt == 1 {
				return nil, tasker.Retryable(fmt.Errorf("first attempt of task %d fails", sc.TaskID), 0)
			}
			return map[string]any{"ok": true}, nil
		}))
		return c
	}
	// Both clients migrate at once through the pooler (the migration lock
	// is transaction-scoped, so it survives transaction pooling).
	cs := make([]*tasker.Client, clients)
	var wg sync.WaitGroup
	for i := range cs {
		wg.Add(1)
		go func() { defer wg.Done(); cs[i] = open(fmt.Sprintf("bouncer-%d", i)) }()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, clients)
	for _, c := range cs {
		go func() { done <- c.Run(runCtx, workers) }()
	}
	defer func() {
		cancel()
		for range cs {
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		}
	}()
	ids := make([]int64, tasks)
	for i := range ids {
		task, _, err := cs[i%clients].InitializeTask(ctx, &tasker.TaskRequest{Namespace: "bouncer", Name: "pooled",
			Context: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)), IdempotencyKey: fmt.Sprintf("k%d", i)})
		if err != nil {
			t.Fatalf("create task %d through pgbouncer: %v", i, err)
		}
		ids[i] = task.ID
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, id := range ids {
		for {
			d, err := cs[0].Task(ctx, id)
			if err != nil {
				t.Fatalf("read task %d: %v", id, err)
			}
			if d.State == tasker.TaskState("complete") {
				for _, s := range d.Steps {
					want := 1
					if s.Name == "d" {
						want = 2
					}
					if string(s.State) != "complete" || s.Attempts != want {
						t.Errorf("task %d step %s: %s after %d attempts, want complete after %d", id, s.Name, s.State, s.Attempts, want)
					}
				}
				break
			}
			if d.State == tasker.TaskState("error") || time.Now().After(deadline) {
				t.Fatalf("task %d is %s", id, d.State)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	for _, id := range ids {
		if flaky[id] != 2 {
			t.Errorf("task %d: step d ran %d times, want 2", id, flaky[id])
		}
	}
	// The idempotency key is honoured through the pooler too.
	again, created, err := cs[1].InitializeTask(ctx, &tasker.TaskRequest{Namespace: "bouncer", Name: "pooled",
		Context: json.RawMessage(`{"n":0}`), IdempotencyKey: "k0"})
	if err != nil || created || again.ID != ids[0] {
		t.Errorf("repeat of k0: id %v created %v err %v, want task %d not created", again, created, err, ids[0])
	}
}

// TestPgBouncerListenDirect: with listen_host/listen_port naming PostgreSQL
// itself, a store behind PgBouncer listens on a direct connection and
// hears a task being queued through the pooler.
func TestPgBouncerListenDirect(t *testing.T) {
	schemaURL := testdb.PostgresURL(t)
	bouncerURL := startPgBouncer(t, schemaURL, 2)
	u, err := url.Parse(schemaURL)
	if err != nil {
		t.Fatal(err)
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		host, port = u.Query().Get("host"), u.Query().Get("port")
	}
	if port == "" {
		port = "5432"
	}
	// search_path reaches PostgreSQL on the direct connection; PgBouncer
	// ignores it (ignore_startup_parameters) and sets it by connect_query.
	q := url.Values{}
	q.Set(postgres.PgBouncerParam, "true")
	q.Set(postgres.ListenHostParam, host)
	q.Set(postgres.ListenPortParam, port)
	q.Set(postgres.ListenDBNameParam, strings.TrimPrefix(u.Path, "/")) // PgBouncer calls it "tasker"
	q.Set("search_path", u.Query().Get("search_path"))
	dsn := bouncerURL + "&" + q.Encode()
	ctx := context.Background()
	c, err := tasker.Open(ctx, tasker.Config{DatabaseURL: dsn, AutoMigrate: true, TemplatesDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.AddTemplate("one.yml", []byte("name: one\nstep_templates:\n  - name: a\n    handler_class: tasker:noop\n")); err != nil {
		t.Fatal(err)
	}
	st, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := st.Listen(lctx)
	if err != nil {
		t.Fatalf("Listen with %s: %v", postgres.ListenHostParam, err)
	}
	select { // the wake-up of a fresh LISTEN connection
	case <-ch:
	case <-time.After(15 * time.Second):
		t.Fatal("the LISTEN connection did not come up")
	}
	if _, _, err := c.InitializeTask(ctx, &tasker.TaskRequest{Namespace: "default", Name: "one"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	case <-time.After(15 * time.Second):
		t.Fatal("no notification for a task queued through PgBouncer")
	}
	if _, err := postgres.Open(ctx, bouncerURL+"&"+postgres.ListenPortParam+"=x"); err == nil {
		t.Error("a bad listen_port was accepted")
	}
}
