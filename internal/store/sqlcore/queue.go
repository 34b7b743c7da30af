package sqlcore

import (
	"context"
	"fmt"
	"time"

	"github.com/tasker-systems/tasker/internal/store"
)

// QueueApply writes the enqueue side of a state change inside its transaction.
func (s *Core) QueueApply(ctx context.Context, tx Querier, taskID int64, op store.QueueOp, now time.Time) error {
	switch op.Kind {
	case store.QueueNone:
		return nil
	case store.QueueDelete:
		if _, err := tx.Exec(ctx, s.Q("QueueDelete"), taskID); err != nil {
			return fmt.Errorf("dequeue task %d: %w", taskID, err)
		}
		return nil
	case store.QueueUpsert:
		runAt := op.RunAt
		if runAt.IsZero() {
			runAt = now
		}
		operation := op.Operation
		if operation == "" {
			operation = "enqueue"
		}
		_, err := tx.Exec(ctx, s.Q("QueueUpsert"),
			taskID, operation, s.T(runAt), op.Priority, op.Reason, s.T(now))
		if err != nil {
			return fmt.Errorf("enqueue task %d: %w", taskID, err)
		}
		return nil
	}
	return fmt.Errorf("enqueue task %d: unknown queue operation %d", taskID, op.Kind)
}

func (s *Core) scanQueue(rs Rows) ([]*store.QueueEntry, error) {
	defer rs.Close()
	var out []*store.QueueEntry
	for rs.Next() {
		var e store.QueueEntry
		var runAt, lease, created ScanTime
		if err := rs.Scan(&e.TaskID, &e.Operation, &runAt, &e.Priority, &e.Attempts, &e.Reason, &e.LeaseOwner, &lease, &created); err != nil {
			return nil, err
		}
		e.RunAt, e.LeaseExpiresAt, e.CreatedAt = runAt.T, lease.Ptr(), created.T
		out = append(out, &e)
	}
	return out, rs.Err()
}

// QueueClaim implements store.Store.
func (s *Core) QueueClaim(ctx context.Context, p *store.QueueClaimParams) ([]*store.QueueEntry, error) {
	due := p.DueBefore
	if due.IsZero() {
		due = p.Now
	}
	rs, err := s.PerCall().Query(ctx, s.Q("QueueClaim"), p.Owner, s.T(p.LeaseUntil), s.T(p.Now), p.Limit, s.T(due))
	if err != nil {
		return nil, fmt.Errorf("claim queue: %w", err)
	}
	out, err := s.scanQueue(rs)
	if err != nil {
		return nil, fmt.Errorf("claim queue: %w", err)
	}
	return out, nil
}

// QueueRelease implements store.Store.
func (s *Core) QueueRelease(ctx context.Context, taskID int64, owner string, runAt time.Time) error {
	_, err := s.db.Exec(ctx, s.Q("QueueRelease"), taskID, owner, s.T(runAt))
	if err != nil {
		return fmt.Errorf("release queue entry of task %d: %w", taskID, err)
	}
	return nil
}

// QueueAck implements store.Store.
func (s *Core) QueueAck(ctx context.Context, taskID int64, owner string) error {
	if _, err := s.db.Exec(ctx, s.Q("QueueAck"), taskID, owner); err != nil {
		return fmt.Errorf("ack queue entry of task %d: %w", taskID, err)
	}
	return nil
}

// QueueExtend implements store.Store.
func (s *Core) QueueExtend(ctx context.Context, owner string, taskIDs []int64, until time.Time) (int, error) {
	if len(taskIDs) == 0 {
		return 0, nil
	}
	n, err := s.db.Exec(ctx, s.Q("QueueExtend"), owner, s.T(until), s.IDs(taskIDs))
	if err != nil {
		return 0, fmt.Errorf("extend queue leases: %w", err)
	}
	return int(n), nil
}

// QueueList implements store.Store.
func (s *Core) QueueList(ctx context.Context, limit int) ([]*store.QueueEntry, error) {
	rs, err := s.db.Query(ctx, s.Q("QueueList"), limit)
	if err != nil {
		return nil, fmt.Errorf("list queue: %w", err)
	}
	out, err := s.scanQueue(rs)
	if err != nil {
		return nil, fmt.Errorf("list queue: %w", err)
	}
	return out, nil
}

// QueueNextRunAt implements store.Store.
func (s *Core) QueueNextRunAt(ctx context.Context, after time.Time) (*time.Time, error) {
	var at ScanTime
	if err := s.PerCall().QueryRow(ctx, s.Q("QueueNextRunAt"), s.T(after)).Scan(&at); err != nil {
		return nil, fmt.Errorf("next queue entry: %w", err)
	}
	return at.Ptr(), nil
}
