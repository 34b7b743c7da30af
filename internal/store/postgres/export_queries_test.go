package postgres

import (
	"context"

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
// store's idle pool connections hold prepared (pgx's statement cache).
func (s *Store) PreparedForTest(ctx context.Context, substr string) (int, error) {
	n := 0
	for _, c := range s.pg.pool.AcquireAllIdle(ctx) {
		var k int
		err := c.QueryRow(ctx, "SELECT count(*) FROM pg_prepared_statements WHERE strpos(statement, $1) > 0", substr).Scan(&k)
		c.Release()
		if err != nil {
			return 0, err
		}
		n += k
	}
	return n, nil
}
