package postgres

import (
	"context"
	"time"

	"github.com/tasker-systems/tasker/internal/store/sqlcore"
)

// QueriesForTest returns the package's named queries and the names it
// runs itself.
func QueriesForTest() (sqlcore.Queries, []string, error) {
	q, err := loadQueries()
	return q, ownQueries, err
}

// BatchSettingsForTest are the settings of the batch transactions.
const BatchSettingsForTest = batchSettings

// PrepareForTest prepares query on a connection of the store's pool.
func (s *Store) PrepareForTest(ctx context.Context, query string) error {
	conn, err := s.pg.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	_, err = conn.Conn().Prepare(ctx, "", query)
	return err
}

// PreparedForTest counts the statements containing substr that the
// store's pool connections hold prepared (pgx's statement cache). It
// waits (up to ten seconds) until every connection of the pool is idle: a
// connection busy elsewhere (a background notification, say) would hide
// its statements from the count.
func (s *Store) PreparedForTest(ctx context.Context, substr string) (int, error) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		conns := s.pg.pool.AcquireAllIdle(ctx)
		if int32(len(conns)) < s.pg.pool.Stat().TotalConns() && time.Now().Before(deadline) {
			for _, c := range conns {
				c.Release()
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		n := 0
		var err error
		for _, c := range conns {
			var k int
			if err == nil {
				err = c.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_statements WHERE strpos(statement, $1) > 0",
					substr).Scan(&k)
			}
			c.Release()
			n += k
		}
		return n, err
	}
}
