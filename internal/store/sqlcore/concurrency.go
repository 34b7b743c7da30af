package sqlcore

import (
	"context"
	"fmt"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/taskertype"
)

// Concurrency keys: admission of a task with a key (store.Store.TaskAdmit).
// Each database serializes the admissions of one key in its own way, behind
// the ConcurrencyLock query: PostgreSQL takes a transaction-scoped advisory
// lock on the key's hash and reads the running tasks of the key FOR SHARE
// (a finish in flight is waited for, then seen); SQLite's write transaction
// (BEGIN IMMEDIATE) already excludes every other writer. The count comes
// from the tasks' states alone, so a task whose runner died still holds its
// slot until it is rescued and finishes: no slot is leaked or invented.

// Policy names as the store keeps them (template.Policy*).
const (
	policyCancelNewest = "cancel_newest"
	policyCancelOldest = "cancel_oldest"
)

// TaskConcurrency implements store.Store.
func (s *Core) TaskConcurrency(ctx context.Context, taskID int64) (*store.ConcurrencyState, error) {
	var cs *store.ConcurrencyState
	err := s.InTx(ctx, func(tx Tx) error {
		_, c, _, err := s.concurrencyOf(ctx, tx, taskID)
		if err != nil || c == nil {
			return err
		}
		running, err := s.concurrencyRunning(ctx, tx, c.Key, false)
		if err != nil {
			return err
		}
		cs = &store.ConcurrencyState{TaskConcurrency: *c, Running: len(running)}
		return nil
	})
	return cs, err
}

// concurrencyOf reads the task's state, key (nil: none) and priority.
func (s *Core) concurrencyOf(ctx context.Context, q Querier, taskID int64) (taskertype.TaskState, *store.TaskConcurrency,
	int, error) {
	var state, key, policy string
	var limit, priority int
	err := q.QueryRow(ctx, s.Q("ConcurrencyOf"), taskID).Scan(&state, &key, &limit, &policy, &priority)
	if IsNoRows(err) {
		return "", nil, 0, &taskertype.TaskNotFoundError{TaskID: taskID}
	}
	if err != nil {
		return "", nil, 0, fmt.Errorf("read concurrency key of task %d: %w", taskID, err)
	}
	if key == "" {
		return taskertype.TaskState(state), nil, priority, nil
	}
	return taskertype.TaskState(state), &store.TaskConcurrency{Key: key, Limit: limit, Policy: policy}, priority, nil
}

// concurrencyRunning lists the running tasks with key, oldest first; with
// lock, after taking the key's lock (see the package comment above).
func (s *Core) concurrencyRunning(ctx context.Context, tx Tx, key string, lock bool) ([]int64, error) {
	if lock {
		if _, err := tx.Exec(ctx, s.Q("ConcurrencyLock"), key); err != nil {
			return nil, fmt.Errorf("lock concurrency key %q: %w", key, err)
		}
	}
	rs, err := tx.Query(ctx, s.Q("ConcurrencyRunning"), key)
	if err != nil {
		return nil, fmt.Errorf("count running tasks of concurrency key %q: %w", key, err)
	}
	defer rs.Close()
	var ids []int64
	for rs.Next() {
		var id int64
		if err := rs.Scan(&id); err != nil {
			return nil, fmt.Errorf("count running tasks of concurrency key %q: %w", key, err)
		}
		ids = append(ids, id)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("count running tasks of concurrency key %q: %w", key, err)
	}
	return ids, nil
}

// TaskAdmit implements store.Store.
func (s *Core) TaskAdmit(ctx context.Context, p *store.TaskAdmitParams) (*store.AdmitResult, error) {
	// A task without a key is answered by one read, outside a transaction.
	state, c, _, err := s.concurrencyOf(ctx, s.db, p.TaskID)
	if err != nil {
		return nil, err
	}
	if c == nil || state != taskertype.TaskStatePending {
		return &store.AdmitResult{Outcome: store.AdmitFree, State: state}, nil
	}
	var res *store.AdmitResult
	err = s.InTx(ctx, func(tx Tx) error {
		var err error
		res, err = s.admitIn(ctx, tx, p, c)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("admit task %d (concurrency key %q): %w", p.TaskID, c.Key, err)
	}
	return res, nil
}

// admitIn is TaskAdmit's transaction for a task with key c.
func (s *Core) admitIn(ctx context.Context, tx Tx, p *store.TaskAdmitParams, c *store.TaskConcurrency) (*store.AdmitResult, error) {
	running, err := s.concurrencyRunning(ctx, tx, c.Key, true)
	if err != nil {
		return nil, err
	}
	// Re-read under the lock: another runner may have admitted or
	// cancelled the task meanwhile.
	state, _, priority, err := s.concurrencyOf(ctx, tx, p.TaskID)
	if err != nil {
		return nil, err
	}
	if p.Clock != nil {
		now := p.Clock()
		start := *p.Start
		start.Now = now
		cp := *p
		cp.Start = &start
		if p.Cancel != nil {
			cancel, task := *p.Cancel, *p.Cancel.Task
			cancel.Now, task.Now = now, now
			cancel.Task = &task
			cp.Cancel = &cancel
		}
		p = &cp
	}
	res := &store.AdmitResult{State: state, Concurrency: &store.ConcurrencyState{TaskConcurrency: *c, Running: len(running)}}
	if state != taskertype.TaskStatePending {
		res.Outcome = store.AdmitFree
		return res, nil
	}
	if len(running) < c.Limit {
		return s.admitStart(ctx, tx, p, res, store.AdmitStarted)
	}
	at := fmt.Sprintf("concurrency key %s at limit %d", c.Key, c.Limit)
	switch c.Policy {
	case policyCancelNewest:
		res.Reason = at + " (policy cancel_newest): cancelled before it started"
		if err := s.admitCancel(ctx, tx, p, res, p.TaskID); err != nil {
			return nil, err
		}
		res.Outcome, res.State = store.AdmitCancelledNewest, taskertype.TaskStateCancelled
		return res, nil
	case policyCancelOldest:
		res.Reason = fmt.Sprintf("%s (policy cancel_oldest): cancelled to make room for task %d", at, p.TaskID)
		// Cancel the oldest running tasks until one is under the limit
		// (more than one only when the limit was lowered).
		for _, id := range running[:len(running)-c.Limit+1] {
			if err := s.admitCancel(ctx, tx, p, res, id); err != nil {
				return nil, err
			}
		}
		return s.admitStart(ctx, tx, p, res, store.AdmitReplacedOldest)
	}
	res.Outcome = store.AdmitParked
	park := p.Park
	park.Priority = priority
	if err := s.QueueApply(ctx, tx, p.TaskID, park, UTC(p.Start.Now)); err != nil {
		return nil, err
	}
	return res, nil
}

// admitStart applies the start transition of an admitted task.
func (s *Core) admitStart(ctx context.Context, tx Tx, p *store.TaskAdmitParams, res *store.AdmitResult,
	outcome store.AdmitOutcome) (*store.AdmitResult, error) {
	tr, err := s.TaskMove(ctx, tx, p.Start)
	if err != nil {
		return nil, err
	}
	res.Outcome, res.Start, res.State = outcome, tr, tr.State
	if !tr.Changed {
		res.Outcome = store.AdmitFree
	}
	return res, nil
}

// admitCancel cancels task id and its unfinished steps, as p.Cancel says.
func (s *Core) admitCancel(ctx context.Context, tx Tx, p *store.TaskAdmitParams, res *store.AdmitResult, id int64) error {
	if p.Cancel == nil || p.Cancel.Task == nil {
		return fmt.Errorf("admission policy needs a cancellation (TaskAdmitParams.Cancel)")
	}
	rs, err := tx.Query(ctx, s.Q("ConcurrencyTaskSteps"), id)
	if err != nil {
		return fmt.Errorf("steps of task %d: %w", id, err)
	}
	var steps []int64
	for rs.Next() {
		var sid int64
		if err := rs.Scan(&sid); err != nil {
			rs.Close()
			return fmt.Errorf("steps of task %d: %w", id, err)
		}
		steps = append(steps, sid)
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return fmt.Errorf("steps of task %d: %w", id, err)
	}
	cp := *p.Cancel
	task := *p.Cancel.Task
	cp.TaskID, cp.StepIDs, cp.Reason = id, steps, res.Reason
	task.TaskID, task.Reason = id, res.Reason
	cp.Task = &task
	tr, err := s.StepTransitionIn(ctx, tx, &cp)
	if err != nil {
		return fmt.Errorf("cancel task %d: %w", id, err)
	}
	if tr.Task == nil || !tr.Task.Changed {
		return fmt.Errorf("cancel task %d: it left the states the cancellation applies to", id)
	}
	res.Cancelled = append(res.Cancelled, store.AdmitCancelled{TaskID: id, Steps: tr.Moved})
	return nil
}

// ConcurrencyLockMany is store.Tx.ConcurrencyLockMany inside tx, for both
// databases. The ConcurrencyLockMany query reads the pending tasks with a
// key (rows with running false) and locks their keys. On PostgreSQL the
// running tasks of those keys come from ConcurrencyRunningMany, a statement
// of its own whose snapshot is taken after the locks. SQLite's write
// transaction is the lock, so its ConcurrencyLockMany returns the running
// tasks of the keys too (rows with running true, oldest first) and it
// defines no ConcurrencyRunningMany: one statement per claim batch.
func (s *Core) ConcurrencyLockMany(ctx context.Context, tx Tx, taskIDs []int64) (*store.ConcurrencyLocked, error) {
	out := &store.ConcurrencyLocked{Tasks: map[int64]*store.TaskConcurrency{}, Running: map[string][]int64{}}
	if len(taskIDs) == 0 {
		return out, nil
	}
	rs, err := tx.Query(ctx, s.Q("ConcurrencyLockMany"), s.IDs(taskIDs))
	if err != nil {
		return nil, fmt.Errorf("lock concurrency keys of tasks %v: %w", taskIDs, err)
	}
	var keys []string
	for rs.Next() {
		var id int64
		var running bool
		c := &store.TaskConcurrency{}
		if err := rs.Scan(&id, &c.Key, &c.Limit, &c.Policy, &running); err != nil {
			rs.Close()
			return nil, fmt.Errorf("lock concurrency keys of tasks %v: %w", taskIDs, err)
		}
		if running {
			out.Running[c.Key] = append(out.Running[c.Key], id)
			continue
		}
		out.Tasks[id] = c
		if _, seen := out.Running[c.Key]; !seen {
			out.Running[c.Key] = nil
			keys = append(keys, c.Key)
		}
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("lock concurrency keys of tasks %v: %w", taskIDs, err)
	}
	runningQ, separate := s.q["ConcurrencyRunningMany"]
	if len(keys) == 0 || !separate {
		return out, nil
	}
	rs, err = tx.Query(ctx, runningQ, s.Strs(keys))
	if err != nil {
		return nil, fmt.Errorf("count running tasks of concurrency keys %q: %w", keys, err)
	}
	defer rs.Close()
	for rs.Next() {
		var id int64
		var key string
		if err := rs.Scan(&id, &key); err != nil {
			return nil, fmt.Errorf("count running tasks of concurrency keys %q: %w", keys, err)
		}
		out.Running[key] = append(out.Running[key], id)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("count running tasks of concurrency keys %q: %w", keys, err)
	}
	return out, nil
}
