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
