//go:build unix

package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store/sqlite"
)

// The mode of a new database does not depend on the umask: 0600 with a
// permissive umask (0) and with a strict one that would leave the owner
// unable to write (0277).
func TestSQLiteFileModeIgnoresUmask(t *testing.T) {
	// Not parallel: the umask belongs to the whole process.
	for _, mask := range []int{0, 0o277} {
		old := syscall.Umask(mask)
		path := filepath.Join(t.TempDir(), "tasker.db")
		st, err := sqlite.Open(context.Background(), path)
		syscall.Umask(old)
		require.NoError(t, err, "umask %o", mask)
		_, err = st.MigrateUp(context.Background(), 0)
		require.NoError(t, err, "umask %o", mask)
		for _, f := range []string{path, path + "-wal", path + "-shm"} {
			info, err := os.Stat(f)
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "umask %o: %s", mask, filepath.Base(f))
		}
		require.NoError(t, st.Close())
	}
}
