package postgres

import (
	"context"
	"fmt"
	"maps"
	"slices"
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
	rs, err := s.PerCall().Query(ctx, s.Q("QueueClaimStart"), p.Owner, s.T(p.LeaseUntil), s.T(p.Now), p.Limit, s.T(due),
		p.StartReason)
	if err != nil {
		return nil, fmt.Errorf("claim queue: %w", err)
	}
	defer rs.Close()
	var out []*store.QueueEntry
	keyed := map[int64]keyedClaim{} // pending with a key: for admission
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
			keyed[task.ID] = keyedClaim{entry: &e, task: task}
		}
		out = append(out, &e)
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
		if err := s.startKeyed(ctx, p.Owner, at, p.StartReason, keyed); err != nil {
			// The claim is committed: its entries are returned (unstarted,
			// their coordinators admit them) with the error.
			return out, err
		}
	}
	return out, nil
}

// keyedClaim is a claimed pending task with a concurrency key: its entry
// and its row as the claim read it.
type keyedClaim struct {
	entry *store.QueueEntry
	task  *taskertype.Task
}

// startKeyed admits and starts the claimed pending tasks with a
// concurrency key, by id (tasker_concurrency_start, migration 0024), and
// marks the entries of those it started as QueueClaimStart marks its own.
// at is nil for the database's clock (QueueClaimParams.DatabaseClock), or
// the caller's clock as the call is sent, to which the database adds the
// time it spent in the call.
func (s *Store) startKeyed(ctx context.Context, owner string, at any, reason string, keyed map[int64]keyedClaim) error {
	ids := slices.Sorted(maps.Keys(keyed))
	rs, err := s.DB().Query(ctx, s.Q("ConcurrencyStart"), ids, owner, at, reason)
	if err != nil {
		return fmt.Errorf("admit claimed tasks with a concurrency key: %w", err)
	}
	defer rs.Close()
	type start struct {
		id  int64
		seq int
		at  sqlcore.ScanTime
	}
	var starts []start
	for rs.Next() {
		var st start
		if err := rs.Scan(&st.id, &st.seq, &st.at); err != nil {
			return fmt.Errorf("admit claimed tasks with a concurrency key: %w", err)
		}
		starts = append(starts, st)
	}
	if err := rs.Err(); err != nil {
		return fmt.Errorf("admit claimed tasks with a concurrency key: %w", err)
	}
	// Marked once the statement has succeeded: an entry marked started is
	// handled as one.
	for _, st := range starts {
		k := keyed[st.id] // the function starts only tasks it was given
		k.task.State, k.task.UpdatedAt = taskertype.TaskStateInProgress, st.at.T
		k.entry.Started = &store.QueueStarted{Task: k.task, Transition: &store.TransitionResult{Changed: true,
			From: taskertype.TaskStatePending, State: k.task.State, Seq: st.seq}}
	}
	return nil
}
