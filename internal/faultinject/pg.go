package faultinject

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
)

// Cluster is a throwaway PostgreSQL cluster owned by the harness, so that it
// can be restarted without disturbing anyone else's database. As root, the
// server binaries run as the postgres OS user (runuser).
type Cluster struct {
	Dir  string // holds data/, the socket and server.log
	Bin  string
	Port int
	URL  string
}

// FindPGBin returns $PGBIN or the newest /usr/lib/postgresql/*/bin.
func FindPGBin() (string, error) {
	if b := os.Getenv("PGBIN"); b != "" {
		return b, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi < vj
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", fmt.Errorf("no PostgreSQL server binaries (initdb) found; set PGBIN")
}

// StartCluster initializes and starts a durable cluster (fsync on) in a new
// directory under parent, listening on 127.0.0.1 at a free port.
func StartCluster(ctx context.Context, parent string) (*Cluster, error) {
	bin, err := FindPGBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(parent, "fi-pg-")
	if err != nil {
		return nil, fmt.Errorf("cluster dir: %w", err)
	}
	c := &Cluster{Dir: dir, Bin: bin}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cluster dir: %w", err)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root needs a postgres OS user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, fmt.Errorf("cluster dir: %w", err)
		}
	}
	data := filepath.Join(dir, "data")
	if err := c.asOwner(ctx, "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8",
		"--locale=C", "--no-sync", "--no-instructions"); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("unix_socket_directories = '%s'\nmax_connections = 200\nshared_buffers = 128MB\n", dir)
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("postgresql.conf: %w", err)
	}
	_, err = f.WriteString(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("postgresql.conf: %w", err)
	}
	for attempt := 0; attempt < 5; attempt++ {
		if c.Port, err = freePort(); err != nil {
			return nil, err
		}
		if err = c.pgctl(ctx, "start"); err == nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	c.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", c.Port)
	return c, nil
}

// Restart restarts the server with an immediate (crash-like) shutdown: no
// checkpoint, every connection dropped, WAL replayed at start.
func (c *Cluster) Restart(ctx context.Context) error {
	return c.pgctl(ctx, "restart", "-m", "immediate")
}

// Halt stops the server immediately and leaves it down: connections are
// refused until Start.
func (c *Cluster) Halt(ctx context.Context) error { return c.pgctl(ctx, "stop", "-m", "immediate") }

// Start starts a halted server again on the same port.
func (c *Cluster) Start(ctx context.Context) error { return c.pgctl(ctx, "start") }

// Stop stops the server (immediately) and removes the cluster directory.
func (c *Cluster) Stop(ctx context.Context) error {
	err := c.pgctl(ctx, "stop", "-m", "immediate")
	if rerr := os.RemoveAll(c.Dir); err == nil {
		err = rerr
	}
	return err
}

func (c *Cluster) pgctl(ctx context.Context, args ...string) error {
	full := []string{"-D", filepath.Join(c.Dir, "data"), "-l", filepath.Join(c.Dir, "server.log"), "-w", "-t", "60",
		"-o", fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1", c.Port)}
	return c.asOwner(ctx, "pg_ctl", append(full, args...)...)
}

func (c *Cluster) asOwner(ctx context.Context, prog string, args ...string) error {
	path := filepath.Join(c.Bin, prog)
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, path, args...)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		tail := out.String()
		if b, rerr := os.ReadFile(filepath.Join(c.Dir, "server.log")); rerr == nil && len(b) > 0 {
			tail += "\nserver.log: " + string(b[max(0, len(b)-1500):])
		}
		return fmt.Errorf("%s %s: %w: %s", prog, args[len(args)-1], err, tail)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
