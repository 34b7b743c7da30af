package sqlstore

import (
	"context"
	"fmt"
	"time"
)

// QueueStats describes the durable queue at one instant.
type QueueStats struct {
	// Due counts records a runner may claim now: run_at reached and no
	// live lease.
	Due int64
	// Leased counts records held under a live lease (tasks being handled).
	Leased int64
	// Total counts every record (unfinished tasks, due or not).
	Total int64
	// OldestDue is the earliest run_at among the due records (nil: none).
	OldestDue *time.Time
}

// QueueStats aggregates the durable queue (which holds only unfinished
// tasks) in one statement, for metrics. It reads every queue row, not
// the tasks or steps.
func (s *Store) QueueStats(ctx context.Context, now time.Time) (*QueueStats, error) {
	var st QueueStats
	var oldest scanTime
	err := s.db.queryRow(ctx, `SELECT
	COALESCE(SUM(CASE WHEN run_at <= $1 AND (lease_expires_at IS NULL OR lease_expires_at < $1) THEN 1 ELSE 0 END), 0),
	COALESCE(SUM(CASE WHEN lease_expires_at >= $1 THEN 1 ELSE 0 END), 0),
	COUNT(*),
	MIN(CASE WHEN run_at <= $1 AND (lease_expires_at IS NULL OR lease_expires_at < $1) THEN run_at END)
FROM tasker_task_queue`, s.t(now)).Scan(&st.Due, &st.Leased, &st.Total, &oldest)
	if err != nil {
		return nil, fmt.Errorf("queue stats: %w", err)
	}
	st.OldestDue = oldest.ptr()
	return &st, nil
}
