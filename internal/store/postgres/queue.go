package postgres

import (
	"context"
	"fmt"

	"github.com/tasker-systems/tasker/internal/store"
)

// QueueClaim implements store.Store. With p.Start the claim also starts
// the tasks it can (QueueClaimStart): the enqueue record is in the task's
// row (migration 0021), so the lease and the start are one write of it.
func (s *Store) QueueClaim(ctx context.Context, p *store.QueueClaimParams) ([]*store.QueueEntry, error) {
	if !p.Start {
		return s.Core.QueueClaim(ctx, p)
	}
	due := p.DueBefore
	if due.IsZero() {
		due = p.Now
	}
	rs, err := s.DB().Query(ctx, s.Q("QueueClaimStart"), p.Owner, s.T(p.LeaseUntil), s.T(p.Now), p.Limit, s.T(due),
		p.StartReason)
	if err != nil {
		return nil, fmt.Errorf("claim queue: %w", err)
	}
	out, err := s.ScanQueue(rs, true)
	if err != nil {
		return nil, fmt.Errorf("claim queue: %w", err)
	}
	return out, nil
}
