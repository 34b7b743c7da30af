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

// PlanForTest returns the lines of SQLite's EXPLAIN QUERY PLAN of query
// with args.
func (s *Store) PlanForTest(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := s.DB().(*sqlDB).db.QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			return nil, err
		}
		out = append(out, detail)
	}
	return out, rows.Err()
}
