package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/internal/store/sqlcore"
	"github.com/tasker-systems/tasker/taskertype"
)

// QueueClaim implements store.Store. With p.Start the claim also starts
// the tasks it can (QueueClaimStart): the enqueue record is in the task's
// row (migration 0021), so the lease and the start are one write of it.
// The pending tasks with a concurrency key it leased are then admitted in
// one more statement (startKeyed); the ones their key has no room for are
// returned unstarted, for their coordinator's admission and policy.
func (s *Store) QueueClaim(ctx context.Context, p *store.QueueClaimParams) ([]*store.QueueEntry, error) {
	if !p.Start {
		return s.Core.QueueClaim(ctx, p)
	}
	began := time.Now()
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
	var keyed []int64            // pending with a key: for admission
	var tasks []*taskertype.Task // tasks[i] is out[i]'s
	for rs.Next() {
		var e store.QueueEntry
		var from string
		var seq int
		var runAt, lease, created sqlcore.ScanTime
		var started, admit bool
		task, err := sqlcore.ScanTask(rs, &from, &seq, &e.Operation, &runAt, &e.Priority, &e.Attempts, &e.Reason,
			&e.LeaseOwner, &lease, &created, &started, &admit)
		if err != nil {
			return nil, fmt.Errorf("claim queue: %w", err)
		}
		e.TaskID, e.RunAt, e.LeaseExpiresAt, e.CreatedAt = task.ID, runAt.T, lease.Ptr(), created.T
		if started {
			e.Started = &store.QueueStarted{Task: task, Transition: &store.TransitionResult{Changed: true,
				From: taskertype.TaskState(from), State: task.State, Seq: seq}}
		}
		if admit {
			keyed = append(keyed, task.ID)
		}
		out = append(out, &e)
		tasks = append(tasks, task)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("claim queue: %w", err)
	}
	rs.Close()
	if len(keyed) > 0 {
		var at any // nil: the database's clock
		if !p.DatabaseClock {
			at = s.T(p.Now.Add(time.Since(began)))
		}
		if err := s.startKeyed(ctx, p.Owner, at, p.StartReason, keyed, out, tasks); err != nil {
			// The claim is committed: its entries are returned (unstarted,
			// their coordinators admit them) with the error.
			return out, err
		}
	}
	return out, nil
}

// startKeyed admits and starts the claimed pending tasks ids with a
// concurrency key (tasker_concurrency_start, migration 0024) and marks
// their entries in out (tasks[i] is out[i]'s task) started, as
// QueueClaimStart marks its own. at is nil for the database's clock
// (QueueClaimParams.DatabaseClock), or the caller's clock as the call is
// sent, to which the database adds the time it spent in the call.
func (s *Store) startKeyed(ctx context.Context, owner string, at any, reason string, ids []int64,
	out []*store.QueueEntry, tasks []*taskertype.Task) error {
	rs, err := s.DB().Query(ctx, s.Q("ConcurrencyStart"), ids, owner, at, reason)
	if err != nil {
		return fmt.Errorf("admit claimed tasks with a concurrency key: %w", err)
	}
	defer rs.Close()
	type start struct {
		seq int
		at  sqlcore.ScanTime
	}
	started := map[int64]*start{}
	for rs.Next() {
		var id int64
		st := &start{}
		if err := rs.Scan(&id, &st.seq, &st.at); err != nil {
			return fmt.Errorf("admit claimed tasks with a concurrency key: %w", err)
		}
		started[id] = st
	}
	if err := rs.Err(); err != nil {
		return fmt.Errorf("admit claimed tasks with a concurrency key: %w", err)
	}
	for i, e := range out {
		st, ok := started[e.TaskID]
		if !ok {
			continue
		}
		task := tasks[i]
		task.State, task.UpdatedAt = taskertype.TaskStateInProgress, st.at.T
		e.Started = &store.QueueStarted{Task: task, Transition: &store.TransitionResult{Changed: true,
			From: taskertype.TaskStatePending, State: task.State, Seq: st.seq}}
	}
	return nil
}
