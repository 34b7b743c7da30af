package sqlite_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/store/sqlite"
	"github.com/tasker-systems/tasker/internal/testdb"
	"github.com/tasker-systems/tasker/taskertype"
)

// migrateOld builds a database at path with the migrations of
// testdata/old_numbering up to version upTo, recorded as the migrator of
// that time did (version, name, fixed-width UTC text).
func migrateOld(t *testing.T, path string, upTo int) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=foreign_keys(1)")
	require.NoError(t, err)
	defer db.Close()
	_, err = db.Exec(`CREATE TABLE tasker_schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at TIMESTAMP NOT NULL)`)
	require.NoError(t, err)
	files, err := filepath.Glob("testdata/old_numbering/*.up.sql")
	require.NoError(t, err)
	sort.Strings(files)
	for _, f := range files {
		base := strings.TrimSuffix(filepath.Base(f), ".up.sql")
		var v int
		var name string
		_, err := fmt.Sscanf(strings.Replace(base, "_", " ", 1), "%d %s", &v, &name)
		require.NoError(t, err)
		if v > upTo {
			break
		}
		body, err := os.ReadFile(f)
		require.NoError(t, err)
		_, err = db.Exec(string(body))
		require.NoError(t, err, f)
		_, err = db.Exec(`INSERT INTO tasker_schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`, v, name,
			time.Date(2026, 1, v, 0, 0, 0, 0, time.UTC).Format("2006-01-02T15:04:05.000000Z"))
		require.NoError(t, err)
	}
}

// A database migrated under SQLite's old numbering is recognised when it is
// opened: its recorded versions are translated to the shared numbers (the
// changes it skipped recorded as applied), nothing is applied twice, a
// partly migrated one gets exactly the rest, and every migration still
// reverts.
func TestOldNumberingIsRenumbered(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cur := testdb.SQLite(t)
	want, err := cur.MigrationStatus(ctx)
	require.NoError(t, err)
	var later []int // migrations numbered after 14: pending in every case below
	for _, m := range want {
		if m.Version > 14 {
			later = append(later, m.Version)
		}
	}
	require.Len(t, want, 14+len(later))
	for _, c := range []struct {
		upTo     int // old number
		pending  []int
		recorded []int
	}{
		{upTo: 5, pending: []int{12, 13, 14}},
		{upTo: 3, pending: []int{5, 6, 7, 8, 9, 10, 11, 12, 13, 14}},
		{upTo: 2, pending: []int{3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}},
	} {
		t.Run(fmt.Sprintf("old%04d", c.upTo), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "old.db")
			migrateOld(t, path, c.upTo)
			st, err := sqlite.Open(ctx, path)
			require.NoError(t, err)
			defer st.Close()
			status, err := st.MigrationStatus(ctx)
			require.NoError(t, err)
			require.Len(t, status, len(want))
			var pending []int
			for i, m := range status {
				require.Equal(t, want[i].Version, m.Version)
				require.Equal(t, want[i].Name, m.Name)
				if !m.Applied {
					pending = append(pending, m.Version)
				}
			}
			require.Equal(t, append(slices.Clone(c.pending), later...), pending)
			up, err := st.MigrateUp(ctx, 0)
			require.NoError(t, err)
			require.Len(t, up, len(c.pending)+len(later), "only the migrations it lacked are applied")
			res, err := st.TaskCreate(ctx, &store.TaskCreateParams{Namespace: "ns", Name: "t", Version: "1", Context: json.RawMessage(`{}`),
				MaxParallelSteps: 1, Now: time.Now(), Steps: []store.StepSpec{{Name: "a", HandlerClass: "h", MaxAttempts: 1}},
				Queue: store.QueueOp{Kind: store.QueueUpsert}})
			require.NoError(t, err)
			trs, err := st.TaskTransitions(ctx, res.Task.ID)
			require.NoError(t, err)
			require.Len(t, trs, 1)
			require.Equal(t, taskertype.TaskStatePending, res.Task.State)
			down, err := st.MigrateDown(ctx, 0)
			require.NoError(t, err)
			require.Len(t, down, len(want), "every migration reverts")
		})
	}
}
