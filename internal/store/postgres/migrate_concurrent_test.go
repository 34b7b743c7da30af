package postgres_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tasker-systems/tasker/internal/store/postgres"
	"github.com/tasker-systems/tasker/internal/testdb"
)

// Several processes migrating one fresh PostgreSQL schema at once all
// succeed and apply each migration once (PostgreSQL's CREATE TABLE IF NOT
// EXISTS is not safe against a concurrent twin: the advisory lock must
// cover the bookkeeping table too).
func TestPostgresConcurrentFirstMigration(t *testing.T) {
	t.Parallel()
	const stores, rounds = 8, 5
	ctx := context.Background()
	for round := range rounds {
		url := testdb.PostgresURL(t)
		var wg sync.WaitGroup
		start := make(chan struct{})
		errs := make([]error, stores)
		applied := make([]int, stores)
		for i := range stores {
			wg.Go(func() {
				st, err := postgres.Open(ctx, url)
				if err != nil {
					errs[i] = err
					return
				}
				defer st.Close()
				<-start
				done, err := st.MigrateUp(ctx, 0)
				errs[i], applied[i] = err, len(done)
			})
		}
		close(start)
		wg.Wait()
		total := 0
		for i, err := range errs {
			require.NoError(t, err, "round %d, store %d", round, i)
			total += applied[i]
		}
		st, err := postgres.Open(ctx, url)
		require.NoError(t, err)
		ms, err := st.MigrationStatus(ctx)
		st.Close()
		require.NoError(t, err)
		require.Equal(t, len(ms), total, "each migration applied exactly once")
	}
}
