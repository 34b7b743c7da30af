package sqlite

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

// PrepareForTest prepares every named query on the store's database,
// naming the first that fails.
func (s *Store) PrepareForTest(ctx context.Context) error {
	q, err := loadQueries()
	if err != nil {
		return err
	}
	db := s.DB().(*sqlDB).db
	for _, name := range q.Names() {
		st, err := db.PrepareContext(ctx, q[name])
		if err != nil {
			return fmt.Errorf("prepare %s: %w", name, err)
		}
		_ = st.Close()
	}
	return nil
}
