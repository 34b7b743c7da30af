package sqlcore

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
func (s *Core) QueueStats(ctx context.Context, now time.Time) (*QueueStats, error) {
	var st QueueStats
	var oldest ScanTime
	err := s.db.QueryRow(ctx, s.Q("QueueStats"), s.T(now)).Scan(&st.Due, &st.Leased, &st.Total, &oldest)
	if err != nil {
		return nil, fmt.Errorf("queue stats: %w", err)
	}
	st.OldestDue = oldest.Ptr()
	return &st, nil
}
