package sqlcore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/taskertype"
)

// ScanTask reads a row of the task columns (then extra) into a task.
func ScanTask(r Row, extra ...any) (*taskertype.Task, error) {
	var t taskertype.Task
	var state string
	var ctxJSON, tags []byte
	var created, updated, completed, runAt, keepUntil ScanTime
	dest := append([]any{&t.ID, &t.Namespace, &t.Name, &t.Version, &state, &ctxJSON, &t.Initiator,
		&t.SourceSystem, &t.Reason, &tags, &t.Priority, &t.IdempotencyKey, &t.MaxParallelSteps,
		&created, &updated, &completed, &runAt, &t.RetentionSeconds, &t.RetentionFailedSeconds, &keepUntil}, extra...)
	if err := r.Scan(dest...); err != nil {
		return nil, err
	}
	t.State = taskertype.TaskState(state)
	t.Context = json.RawMessage(ctxJSON)
	if len(tags) > 0 {
		if err := json.Unmarshal(tags, &t.Tags); err != nil {
			return nil, fmt.Errorf("task %d tags: %w", t.ID, err)
		}
	}
	t.CreatedAt, t.UpdatedAt, t.CompletedAt, t.RunAt = created.T, updated.T, completed.Ptr(), runAt.Ptr()
	t.KeepUntil = keepUntil.Ptr()
	return &t, nil
}

// TaskGet implements store.Store.
func (s *Core) TaskGet(ctx context.Context, taskID int64) (*taskertype.Task, error) {
	return s.TaskGetIn(ctx, s.db, taskID)
}

// TaskGetIn is TaskGet through q (a transaction).
func (s *Core) TaskGetIn(ctx context.Context, q Querier, taskID int64) (*taskertype.Task, error) {
	t, err := ScanTask(q.QueryRow(ctx, s.Q("TaskGet"), taskID))
	if IsNoRows(err) {
		return nil, &taskertype.TaskNotFoundError{TaskID: taskID}
	}
	if err != nil {
		return nil, fmt.Errorf("get task %d: %w", taskID, err)
	}
	return t, nil
}

// TaskList implements store.Store.
func (s *Core) TaskList(ctx context.Context, p *store.TaskListParams) ([]*taskertype.Task, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "$?", fmt.Sprintf("$%d", len(args))))
	}
	if len(p.States) > 0 {
		states := make([]string, len(p.States))
		for i, st := range p.States {
			states[i] = string(st)
		}
		args = append(args, s.Strs(states))
		where = append(where, s.d.InStrings("t.state", len(args)))
		if !slices.ContainsFunc(p.States, taskertype.TaskState.Terminal) {
			// Unfinished tasks have no completed_at: this lets PostgreSQL
			// use its index of unfinished tasks (migration 0010).
			where = append(where, "t.completed_at IS NULL")
		}
	}
	if p.Namespace != "" {
		add("t.namespace = $?", p.Namespace)
	}
	if p.Name != "" {
		add("t.name = $?", p.Name)
	}
	if p.CreatedAfter != nil {
		add("t.created_at >= $?", s.T(*p.CreatedAfter))
	}
	if p.CreatedBefore != nil {
		add("t.created_at < $?", s.T(*p.CreatedBefore))
	}
	if p.AfterID > 0 {
		add("t.task_id < $?", p.AfterID)
	}
	limit := p.Limit
	switch {
	case limit <= 0:
		limit = 50
	case limit > 1000:
		limit = 1000
	}
	// Built per call from the filters given: the database's TaskListFrom,
	// then the filters' fragments, then the order and limit.
	q := s.Q("TaskListFrom")
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	q += fmt.Sprintf(` ORDER BY t.task_id DESC LIMIT $%d`, len(args))
	rs, err := s.db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	defer rs.Close()
	var out []*taskertype.Task
	for rs.Next() {
		t, err := ScanTask(rs)
		if err != nil {
			return nil, fmt.Errorf("list tasks: %w", err)
		}
		out = append(out, t)
	}
	return out, rs.Err()
}

// TaskTransition implements store.Store.
func (s *Core) TaskTransition(ctx context.Context, p *store.TaskTransitionParams) (*store.TransitionResult, error) {
	var res *store.TransitionResult
	err := s.InTx(ctx, func(tx Tx) error {
		var err error
		res, err = s.TaskMove(ctx, tx, p)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// TaskMove applies the guarded task transition p inside tx (the driver's
// MoveTask, which applies its queue operation too); a task in none of p.From is left
// alone and its state returned (Changed false).
func (s *Core) TaskMove(ctx context.Context, tx Tx, p *store.TaskTransitionParams) (*store.TransitionResult, error) {
	now := UTC(p.Now)
	prev, seq, moved, err := s.d.MoveTask(ctx, tx, p, now)
	if err != nil {
		return nil, fmt.Errorf("transition task %d to %s: %w", p.TaskID, p.To, err)
	}
	if !moved {
		var cur string
		err := tx.QueryRow(ctx, s.Q("TaskState"), p.TaskID).Scan(&cur)
		if IsNoRows(err) {
			return nil, &taskertype.TaskNotFoundError{TaskID: p.TaskID}
		}
		if err != nil {
			return nil, fmt.Errorf("task %d state: %w", p.TaskID, err)
		}
		return &store.TransitionResult{Changed: false, State: taskertype.TaskState(cur)}, nil
	}
	return &store.TransitionResult{Changed: true, State: p.To, From: taskertype.TaskState(prev), Seq: seq}, nil
}

// TaskSummary implements store.Store.
func (s *Core) TaskSummary(ctx context.Context, taskID int64, now time.Time) (*store.TaskSummary, error) {
	return s.Summary(ctx, s.db, taskID, now)
}

// Summary is TaskSummary through q (a transaction).
func (s *Core) Summary(ctx context.Context, q Querier, taskID int64, now time.Time) (*store.TaskSummary, error) {
	var sum store.TaskSummary
	var earliest ScanTime
	err := q.QueryRow(ctx, s.Q("TaskSummary"), taskID, s.T(now)).Scan(&sum.Total, &sum.Pending, &sum.InProgress,
		&sum.WaitingForRetry, &sum.Complete, &sum.Error, &sum.Cancelled, &sum.Ready, &earliest)
	if err != nil {
		return nil, fmt.Errorf("summarize task %d: %w", taskID, err)
	}
	sum.EarliestRetryAt = earliest.Ptr()
	return &sum, nil
}

// TaskTransitions implements store.Store.
func (s *Core) TaskTransitions(ctx context.Context, taskID int64) ([]*taskertype.Transition, error) {
	return s.transitions(ctx, s.Q("TaskTransitions"), taskID)
}

func (s *Core) transitions(ctx context.Context, q string, taskID int64) ([]*taskertype.Transition, error) {
	rs, err := s.db.Query(ctx, q, taskID)
	if err != nil {
		return nil, fmt.Errorf("transitions of task %d: %w", taskID, err)
	}
	defer rs.Close()
	var out []*taskertype.Transition
	for rs.Next() {
		var tr taskertype.Transition
		var meta []byte
		var at ScanTime
		if err := rs.Scan(&tr.ID, &tr.TaskID, &tr.StepID, &tr.StepName, &tr.FromState, &tr.ToState, &tr.Event, &tr.Reason,
			&tr.Actor, &meta, &tr.SortKey, &tr.MostRecent, &at); err != nil {
			return nil, fmt.Errorf("transitions of task %d: %w", taskID, err)
		}
		tr.Metadata, tr.CreatedAt = meta, at.T
		out = append(out, &tr)
	}
	return out, rs.Err()
}

// bulkInsert writes n rows into table: COPY where the transaction supports
// it (PostgreSQL), multi-row INSERTs otherwise.
func (s *Core) bulkInsert(ctx context.Context, tx Tx, table string, cols []string, n int, row func(i int) []any) error {
	if n == 0 {
		return nil
	}
	if cp, ok := tx.(Copier); ok && n >= CopyMinRows {
		rows := make([][]any, n)
		for i := range rows {
			rows[i] = row(i)
		}
		return cp.CopyRows(ctx, table, cols, rows)
	}
	return s.InsertRows(ctx, tx, "INSERT INTO "+table+" ("+strings.Join(cols, ", ")+") VALUES", len(cols), n, row, "", nil)
}

// InsertRows runs a multi-row INSERT in chunks, built per call (the
// statement's text depends on the number of rows). prefix ends with VALUES; each
// row has cols parameters; suffix (ON CONFLICT, RETURNING) follows; scan, when
// not nil, reads every returned row.
func (s *Core) InsertRows(ctx context.Context, q Querier, prefix string, cols, n int, row func(i int) []any,
	suffix string, scan func(Rows) error) error {
	for start := 0; start < n; start += ChunkRows {
		end := min(start+ChunkRows, n)
		var b strings.Builder
		b.WriteString(prefix)
		args := make([]any, 0, (end-start)*cols)
		for i := start; i < end; i++ {
			if i > start {
				b.WriteString(",")
			}
			b.WriteString(" (")
			b.WriteString(s.d.RowParams(len(args)+1, cols))
			b.WriteString(")")
			args = append(args, row(i)...)
		}
		b.WriteString(suffix)
		if scan == nil {
			if _, err := q.Exec(ctx, b.String(), args...); err != nil {
				return err
			}
			continue
		}
		rs, err := q.Query(ctx, b.String(), args...)
		if err != nil {
			return err
		}
		for rs.Next() {
			if err := scan(rs); err != nil {
				rs.Close()
				return err
			}
		}
		rs.Close()
		if err := rs.Err(); err != nil {
			return err
		}
	}
	return nil
}
