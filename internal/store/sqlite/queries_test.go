package sqlite_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store/sqlite"
	"github.com/tasker-systems/tasker/internal/store/storetest"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// Every named query of queries/*.sql is one the code runs, every query the
// code runs is there, and each prepares on a migrated database.
func TestQueriesExistAreUsedAndPrepare(t *testing.T) {
	t.Parallel()
	q, own, err := sqlite.QueriesForTest()
	require.NoError(t, err)
	storetest.CheckQueries(t, q, own, testdb.SQLite(t).PrepareForTest, ".", "../sqlcore")
}
