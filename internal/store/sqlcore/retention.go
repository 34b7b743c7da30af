package sqlcore

import (
	"context"
	"fmt"

	"github.com/tasker-systems/tasker/internal/store"
)

// pruneQueries are the names of the delete and count statements for p:
// each task's own keep_until, or the completion time p.FinishedBefore
// names, and that time's argument.
func (s *Core) pruneQueries(p *store.TaskPruneParams) (del, count string, at any) {
	if p.FinishedBefore != nil {
		return "TaskPruneFinished", "TaskPruneCountFinished", s.T(*p.FinishedBefore)
	}
	return "TaskPruneDue", "TaskPruneCountDue", s.T(p.Now)
}

// TaskPrune implements store.Store: the pruning lock (TaskPruneLock),
// then one delete of up to p.Limit tasks, in one transaction.
func (s *Core) TaskPrune(ctx context.Context, p *store.TaskPruneParams) (*store.TaskPruneResult, error) {
	if p.Limit < 1 {
		return nil, fmt.Errorf("prune tasks: limit must be at least 1, got %d", p.Limit)
	}
	del, _, at := s.pruneQueries(p)
	res := &store.TaskPruneResult{}
	err := s.InTx(ctx, func(tx Tx) error {
		var locked bool
		if err := tx.QueryRow(ctx, s.Q("TaskPruneLock")).Scan(&locked); err != nil {
			return fmt.Errorf("prune tasks: take the pruning lock: %w", err)
		}
		if !locked {
			res.Busy = true
			return nil
		}
		n, err := tx.Exec(ctx, s.Q(del), at, p.Limit)
		if err != nil {
			return fmt.Errorf("prune tasks: delete: %w", err)
		}
		res.Deleted = int(n)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// TaskPruneCount implements store.Store.
func (s *Core) TaskPruneCount(ctx context.Context, p *store.TaskPruneParams) (int, error) {
	_, count, at := s.pruneQueries(p)
	var n int
	if err := s.db.QueryRow(ctx, s.Q(count), at).Scan(&n); err != nil {
		return 0, fmt.Errorf("count tasks due for pruning: %w", err)
	}
	return n, nil
}
