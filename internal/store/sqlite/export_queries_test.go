package sqlite

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

// PrepareForTest prepares query on the store's database.
func (s *Store) PrepareForTest(ctx context.Context, query string) error {
	st, err := s.DB().(*sqlDB).db.PrepareContext(ctx, query)
	if err != nil {
		return err
	}
	return st.Close()
}
