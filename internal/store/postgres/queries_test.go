package postgres_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store/postgres"
	"github.com/tasker-systems/tasker/internal/store/storetest"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// Every named query of queries/*.sql is one the code runs, every query the
// code runs is there, and each prepares on a migrated database.
func TestQueriesExistAreUsedAndPrepare(t *testing.T) {
	t.Parallel()
	q, required, err := postgres.QueriesForTest()
	require.NoError(t, err)
	storetest.CheckQueryNames(t, q, required, ".", "../sqlcore")
	st := testdb.Postgres(t)
	require.NoError(t, st.PrepareForTest(context.Background()))
}
