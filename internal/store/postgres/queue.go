package postgres

import (
	"context"
	"fmt"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/store/sqlcore"
	"github.com/tasker-systems/tasker/taskertype"
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
	defer rs.Close()
	var out []*store.QueueEntry
	for rs.Next() {
		var e store.QueueEntry
		var from string
		var seq int
		var runAt, lease, created sqlcore.ScanTime
		var started bool
		task, err := sqlcore.ScanTask(rs, &from, &seq, &e.Operation, &runAt, &e.Priority, &e.Attempts, &e.Reason,
			&e.LeaseOwner, &lease, &created, &started)
		if err != nil {
			return nil, fmt.Errorf("claim queue: %w", err)
		}
		e.TaskID, e.RunAt, e.LeaseExpiresAt, e.CreatedAt = task.ID, runAt.T, lease.Ptr(), created.T
		if started {
			e.Started = &store.QueueStarted{Task: task, Transition: &store.TransitionResult{Changed: true,
				From: taskertype.TaskState(from), State: task.State, Seq: seq}}
		}
		out = append(out, &e)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("claim queue: %w", err)
	}
	return out, nil
}
