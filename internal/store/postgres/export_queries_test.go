package postgres

import (
	"context"
	"fmt"

	"github.com/tasker-systems/tasker/internal/store/sqlcore"
)

// QueriesForTest returns the package's named queries and the names its
// code requires.
func QueriesForTest() (sqlcore.Queries, []string, error) {
	q, err := loadQueries()
	return q, append(append([]string(nil), sqlcore.CoreQueries...), ownQueries...), err
}

// PrepareForTest prepares every named query on one connection of the
// store's pool, naming the first that fails.
func (s *Store) PrepareForTest(ctx context.Context) error {
	q, err := loadQueries()
	if err != nil {
		return err
	}
	conn, err := s.pg.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	for _, name := range q.Names() {
		if _, err := conn.Conn().Prepare(ctx, "", q[name]); err != nil {
			return fmt.Errorf("prepare %s: %w", name, err)
		}
	}
	return nil
}
