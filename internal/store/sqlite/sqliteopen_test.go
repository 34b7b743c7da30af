package sqlite_test

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store/sqlite"
)

// The child side of TestSQLiteConcurrentFirstOpen: open and migrate the
// file named by TASKER_SQLITE_OPEN_CHILD as soon as the start file exists.
func init() {
	path := os.Getenv("TASKER_SQLITE_OPEN_CHILD")
	if path == "" {
		return
	}
	start := os.Getenv("TASKER_SQLITE_OPEN_START")
	if err := os.WriteFile(os.Getenv("TASKER_SQLITE_OPEN_READY"), nil, 0o600); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(100 * time.Microsecond) {
		if _, err := os.Stat(start); err == nil {
			break
		}
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, "no start signal")
			os.Exit(2)
		}
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, path)
	if err == nil {
		_, err = st.MigrateUp(ctx, 0)
		if cerr := st.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "open and migrate:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Several processes opening and migrating one fresh SQLite file at the same
// instant all succeed (before the fix some got SQLITE_BUSY), and the file,
// its -wal and its -shm are readable by their owner only.
func TestSQLiteConcurrentFirstOpen(t *testing.T) {
	const procs, rounds = 8, 5
	for round := range rounds {
		dir := t.TempDir()
		path := filepath.Join(dir, "tasker.db")
		start := filepath.Join(dir, "start")
		cmds := make([]*exec.Cmd, procs)
		outs := make([]*os.File, procs)
		for i := range cmds {
			out, err := os.Create(filepath.Join(dir, "out"+strconv.Itoa(i)))
			require.NoError(t, err)
			outs[i] = out
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "TASKER_SQLITE_OPEN_CHILD="+path, "TASKER_SQLITE_OPEN_START="+start,
				"TASKER_SQLITE_OPEN_READY="+filepath.Join(dir, "ready"+strconv.Itoa(i)))
			cmd.Stdout, cmd.Stderr = out, out
			require.NoError(t, cmd.Start())
			cmds[i] = cmd
		}
		// Start them together once every one is waiting.
		for i := range procs {
			for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
				if _, err := os.Stat(filepath.Join(dir, "ready"+strconv.Itoa(i))); err == nil {
					break
				}
				require.False(t, time.Now().After(deadline), "child %d never got ready", i)
			}
		}
		require.NoError(t, os.WriteFile(start, nil, 0o600))
		for i, cmd := range cmds {
			err := cmd.Wait()
			_ = outs[i].Close()
			if err != nil {
				msg, _ := os.ReadFile(outs[i].Name())
				t.Errorf("round %d, process %d: %v: %s", round, i, err, msg)
			}
		}
		if t.Failed() {
			return
		}

		ctx := context.Background()
		st, err := sqlite.Open(ctx, path)
		require.NoError(t, err)
		ms, err := st.MigrationStatus(ctx)
		require.NoError(t, err)
		for _, m := range ms {
			require.True(t, m.Applied, "migration %d", m.Version)
		}
		for _, f := range []string{path, path + "-wal", path + "-shm"} {
			info, err := os.Stat(f)
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "%s", filepath.Base(f))
		}
		require.NoError(t, st.Close())
	}
}

// A file that exists keeps the permissions its owner gave it.
func TestSQLiteOpenKeepsExistingMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	require.NoError(t, os.WriteFile(path, nil, 0o640))
	require.NoError(t, os.Chmod(path, 0o640)) // whatever the umask
	st, err := sqlite.Open(context.Background(), path)
	require.NoError(t, err)
	_, err = st.MigrateUp(context.Background(), 0)
	require.NoError(t, err)
	require.NoError(t, st.Close())
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o640), info.Mode().Perm())
}

// The same race inside one process, where it is cheap to repeat: SQLite
// locks connections of one process against each other as it locks
// processes.
func TestSQLiteConcurrentFirstOpenInProcess(t *testing.T) {
	const conns, rounds = 8, 40
	ctx := context.Background()
	for round := range rounds {
		path := filepath.Join(t.TempDir(), "tasker.db")
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, conns)
		for i := range conns {
			wg.Go(func() {
				<-start
				st, err := sqlite.Open(ctx, path)
				if err == nil {
					_, err = st.MigrateUp(ctx, 0)
					if cerr := st.Close(); err == nil {
						err = cerr
					}
				}
				errs[i] = err
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d, store %d: %v", round, i, err)
			}
		}
		if t.Failed() {
			return
		}
	}
}

// The race made deterministic: another process holds the write lock of the
// fresh file (it is creating its tables) while this one opens. Switching to
// WAL mode then fails at once with SQLITE_BUSY, without waiting: the open
// must retry until the other is done.
func TestSQLiteOpenWaitsForAnotherWriter(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "tasker.db")
	other, err := sql.Open("sqlite", "file:"+path+"?_txlock=immediate")
	require.NoError(t, err)
	defer other.Close()
	other.SetMaxOpenConns(1)
	tx, err := other.BeginTx(ctx, nil) // BEGIN IMMEDIATE: the write lock
	require.NoError(t, err)
	_, err = tx.Exec(`CREATE TABLE other_writer (x integer)`)
	require.NoError(t, err)
	released := make(chan error, 1)
	time.AfterFunc(300*time.Millisecond, func() { released <- tx.Commit() })

	st, err := sqlite.Open(ctx, path)
	require.NoError(t, err)
	require.NoError(t, <-released)
	_, err = st.MigrateUp(ctx, 0)
	require.NoError(t, err)
	require.NoError(t, st.Close())
}
