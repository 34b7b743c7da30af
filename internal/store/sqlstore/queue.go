package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tasker-systems/tasker/internal/store"
)

// queueApply writes the enqueue side of a state change inside its transaction.
func (s *Store) queueApply(ctx context.Context, tx txer, taskID int64, op store.QueueOp, now time.Time) error {
	switch op.Kind {
	case store.QueueNone:
		return nil
	case store.QueueDelete:
		if _, err := tx.exec(ctx, `DELETE FROM tasker_task_queue WHERE task_id = $1`, taskID); err != nil {
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
		_, err := tx.exec(ctx, `INSERT INTO tasker_task_queue (task_id, operation, run_at, priority, attempts, reason, created_at, updated_at)
VALUES ($1, $2, $3, $4, 0, $5, $6, $6)
ON CONFLICT (task_id) DO UPDATE SET operation = excluded.operation, run_at = excluded.run_at, priority = excluded.priority,
	reason = excluded.reason, attempts = 0, lease_owner = NULL, lease_expires_at = NULL, updated_at = excluded.updated_at`,
			taskID, operation, s.t(runAt), op.Priority, op.Reason, s.t(now))
		if err != nil {
			return fmt.Errorf("enqueue task %d: %w", taskID, err)
		}
		return nil
	}
	return fmt.Errorf("enqueue task %d: unknown queue operation %d", taskID, op.Kind)
}

func (s *Store) scanQueue(rs rows) ([]*store.QueueEntry, error) {
	defer rs.Close()
	var out []*store.QueueEntry
	for rs.Next() {
		var e store.QueueEntry
		var runAt, lease, created scanTime
		if err := rs.Scan(&e.TaskID, &e.Operation, &runAt, &e.Priority, &e.Attempts, &e.Reason, &e.LeaseOwner, &lease, &created); err != nil {
			return nil, err
		}
		e.RunAt, e.LeaseExpiresAt, e.CreatedAt = runAt.T, lease.ptr(), created.T
		out = append(out, &e)
	}
	return out, rs.Err()
}

// QueueClaim implements store.Store.
func (s *Store) QueueClaim(ctx context.Context, p *store.QueueClaimParams) ([]*store.QueueEntry, error) {
	due := p.DueBefore
	if due.IsZero() {
		due = p.Now
	}
	rs, err := s.db.query(ctx, s.q.queueClaim, p.Owner, s.t(p.LeaseUntil), s.t(p.Now), p.Limit, s.t(due))
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
func (s *Store) QueueRelease(ctx context.Context, taskID int64, owner string, runAt time.Time) error {
	_, err := s.db.exec(ctx, `UPDATE tasker_task_queue SET lease_owner = NULL, lease_expires_at = NULL, run_at = $3, updated_at = $3
WHERE task_id = $1 AND lease_owner = $2`, taskID, owner, s.t(runAt))
	if err != nil {
		return fmt.Errorf("release queue entry of task %d: %w", taskID, err)
	}
	return nil
}

// QueueAck implements store.Store.
func (s *Store) QueueAck(ctx context.Context, taskID int64, owner string) error {
	if _, err := s.db.exec(ctx, `DELETE FROM tasker_task_queue WHERE task_id = $1 AND lease_owner = $2`, taskID, owner); err != nil {
		return fmt.Errorf("ack queue entry of task %d: %w", taskID, err)
	}
	return nil
}

// QueueExtend implements store.Store.
func (s *Store) QueueExtend(ctx context.Context, owner string, taskIDs []int64, until time.Time) (int, error) {
	if len(taskIDs) == 0 {
		return 0, nil
	}
	n, err := s.db.exec(ctx, s.q.queueExtend, owner, s.t(until), s.ids(taskIDs))
	if err != nil {
		return 0, fmt.Errorf("extend queue leases: %w", err)
	}
	return int(n), nil
}

// QueueList implements store.Store.
func (s *Store) QueueList(ctx context.Context, limit int) ([]*store.QueueEntry, error) {
	rs, err := s.db.query(ctx, `SELECT task_id, operation, run_at, priority, attempts, reason, COALESCE(lease_owner, ''), lease_expires_at, created_at
FROM tasker_task_queue ORDER BY run_at LIMIT $1`, limit)
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
func (s *Store) QueueNextRunAt(ctx context.Context) (*time.Time, error) {
	var at scanTime
	if err := s.db.queryRow(ctx, `SELECT min(run_at) FROM tasker_task_queue WHERE lease_owner IS NULL`).Scan(&at); err != nil {
		return nil, fmt.Errorf("next queue entry: %w", err)
	}
	return at.ptr(), nil
}

// Listen implements store.Notifier on PostgreSQL with LISTEN/NOTIFY. It
// reconnects with backoff when the connection drops.
func (s *Store) Listen(ctx context.Context) (<-chan struct{}, error) {
	if s.listenErr != nil {
		return nil, s.listenErr
	}
	if s.pool == nil {
		return nil, fmt.Errorf("listen: %s has no notifications", s.dialect)
	}
	ch := make(chan struct{}, 1)
	go s.listenLoop(ctx, s.pool, ch)
	return ch, nil
}

func (s *Store) listenLoop(ctx context.Context, pool *pgxpool.Pool, ch chan struct{}) {
	defer close(ch)
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := s.listenOnce(ctx, pool, ch, &wait)
		if ctx.Err() != nil {
			return
		}
		_ = err // the runner's poll floor covers the gap; retry with backoff
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}

func (s *Store) listenOnce(ctx context.Context, pool *pgxpool.Pool, ch chan struct{}, wait *time.Duration) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	var schema string
	if err := conn.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, `LISTEN tasker_queue`); err != nil {
		return err
	}
	*wait = 100 * time.Millisecond
	// Wake once after (re)connecting: notifications sent while down were missed.
	select {
	case ch <- struct{}{}:
	default:
	}
	for {
		n, err := conn.Conn().WaitForNotification(ctx)
		if err != nil {
			if ctx.Err() != nil {
				_, _ = conn.Exec(context.WithoutCancel(ctx), `UNLISTEN *`)
			}
			return err
		}
		if n.Payload != "" && n.Payload != schema {
			continue // another deployment's queue in this database
		}
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}
