package sqlstore

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

func scanTask(r row, extra ...any) (*taskertype.Task, error) {
	var t taskertype.Task
	var state string
	var ctxJSON, tags []byte
	var created, updated, completed scanTime
	dest := append([]any{&t.ID, &t.Namespace, &t.Name, &t.Version, &state, &ctxJSON, &t.Initiator,
		&t.SourceSystem, &t.Reason, &tags, &t.Priority, &t.IdempotencyKey, &t.MaxParallelSteps,
		&created, &updated, &completed}, extra...)
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
	t.CreatedAt, t.UpdatedAt, t.CompletedAt = created.T, updated.T, completed.ptr()
	return &t, nil
}

// TaskGet implements store.Store.
func (s *Store) TaskGet(ctx context.Context, taskID int64) (*taskertype.Task, error) {
	return s.taskGet(ctx, s.db, taskID)
}

func (s *Store) taskGet(ctx context.Context, q querier, taskID int64) (*taskertype.Task, error) {
	t, err := scanTask(q.queryRow(ctx, `SELECT `+taskCols+` FROM tasker_tasks t WHERE t.task_id = $1`, taskID))
	if isNoRows(err) {
		return nil, &taskertype.TaskNotFoundError{TaskID: taskID}
	}
	if err != nil {
		return nil, fmt.Errorf("get task %d: %w", taskID, err)
	}
	return t, nil
}

// TaskList implements store.Store.
func (s *Store) TaskList(ctx context.Context, p *store.TaskListParams) ([]*taskertype.Task, error) {
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
		args = append(args, s.strs(states))
		where = append(where, inListStr(s.dialect, "t.state", len(args)))
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
		add("t.created_at >= $?", s.t(*p.CreatedAfter))
	}
	if p.CreatedBefore != nil {
		add("t.created_at < $?", s.t(*p.CreatedBefore))
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
	q := `SELECT ` + taskCols + ` FROM tasker_tasks t`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	q += fmt.Sprintf(` ORDER BY t.task_id DESC LIMIT $%d`, len(args))
	if s.dialect == dialectSQLite {
		q = castRe.ReplaceAllString(q, "")
	}
	rs, err := s.db.query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list tasks: %w", err)
	}
	defer rs.Close()
	var out []*taskertype.Task
	for rs.Next() {
		t, err := scanTask(rs)
		if err != nil {
			return nil, fmt.Errorf("list tasks: %w", err)
		}
		out = append(out, t)
	}
	return out, rs.Err()
}

// TaskTransition implements store.Store.
func (s *Store) TaskTransition(ctx context.Context, p *store.TaskTransitionParams) (*store.TransitionResult, error) {
	var res *store.TransitionResult
	err := s.inTx(ctx, func(tx txer) error {
		var err error
		res, err = s.taskMove(ctx, tx, p)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

func (s *Store) taskMove(ctx context.Context, tx txer, p *store.TaskTransitionParams) (*store.TransitionResult, error) {
	now := utc(p.Now)
	from := make([]string, len(p.From))
	for i, st := range p.From {
		from[i] = string(st)
	}
	var prev nullString
	var seq int
	written := 0
	var err error
	if s.q.taskMoveRecord != "" {
		err = tx.queryRow(ctx, s.q.taskMoveRecord, p.TaskID, string(p.To), s.strs(from), s.t(now), p.To.Terminal(),
			p.Event, p.Reason, p.Actor, s.j(p.Meta)).Scan(&prev, &seq, &written)
	} else {
		err = tx.queryRow(ctx, s.q.taskMove, p.TaskID, string(p.To), s.strs(from), s.t(now), p.To.Terminal()).Scan(&prev, &seq)
	}
	if isNoRows(err) {
		var cur string
		err := tx.queryRow(ctx, `SELECT state FROM tasker_tasks WHERE task_id = $1`, p.TaskID).Scan(&cur)
		if isNoRows(err) {
			return nil, &taskertype.TaskNotFoundError{TaskID: p.TaskID}
		}
		if err != nil {
			return nil, fmt.Errorf("task %d state: %w", p.TaskID, err)
		}
		return &store.TransitionResult{Changed: false, State: taskertype.TaskState(cur)}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("transition task %d to %s: %w", p.TaskID, p.To, err)
	}
	if written == 0 {
		// SQLite: the transition row is a statement of its own.
		if _, err := tx.exec(ctx, `INSERT INTO tasker_task_transitions (task_id, from_state, to_state, event, reason, actor, metadata, sort_key, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, p.TaskID, prev.String, string(p.To), p.Event, p.Reason, p.Actor, s.j(p.Meta), seq, s.t(now)); err != nil {
			return nil, fmt.Errorf("task %d transitions: %w", p.TaskID, err)
		}
	}
	if err := s.queueApply(ctx, tx, p.TaskID, p.Queue, now); err != nil {
		return nil, err
	}
	return &store.TransitionResult{Changed: true, State: p.To, From: taskertype.TaskState(prev.String), Seq: seq}, nil
}

// TaskSummary implements store.Store.
func (s *Store) TaskSummary(ctx context.Context, taskID int64, now time.Time) (*store.TaskSummary, error) {
	return s.summary(ctx, s.db, taskID, now)
}

func (s *Store) summary(ctx context.Context, q querier, taskID int64, now time.Time) (*store.TaskSummary, error) {
	var sum store.TaskSummary
	var earliest scanTime
	err := q.queryRow(ctx, s.q.taskSummary, taskID, s.t(now)).Scan(&sum.Total, &sum.Pending, &sum.InProgress,
		&sum.WaitingForRetry, &sum.Complete, &sum.Error, &sum.Cancelled, &sum.Ready, &earliest)
	if err != nil {
		return nil, fmt.Errorf("summarize task %d: %w", taskID, err)
	}
	sum.EarliestRetryAt = earliest.ptr()
	return &sum, nil
}

// TaskTransitions implements store.Store.
func (s *Store) TaskTransitions(ctx context.Context, taskID int64) ([]*taskertype.Transition, error) {
	return s.transitions(ctx, `SELECT tr.id, tr.task_id, 0, '', COALESCE(tr.from_state, ''), tr.to_state, tr.event, tr.reason, tr.actor,
	tr.metadata, tr.sort_key, tr.sort_key = t.transition_seq, tr.created_at
FROM tasker_task_transitions tr JOIN tasker_tasks t ON t.task_id = tr.task_id WHERE tr.task_id = $1 ORDER BY tr.sort_key`, taskID)
}

func (s *Store) transitions(ctx context.Context, q string, taskID int64) ([]*taskertype.Transition, error) {
	rs, err := s.db.query(ctx, q, taskID)
	if err != nil {
		return nil, fmt.Errorf("transitions of task %d: %w", taskID, err)
	}
	defer rs.Close()
	var out []*taskertype.Transition
	for rs.Next() {
		var tr taskertype.Transition
		var meta []byte
		var at scanTime
		if err := rs.Scan(&tr.ID, &tr.TaskID, &tr.StepID, &tr.StepName, &tr.FromState, &tr.ToState, &tr.Event, &tr.Reason,
			&tr.Actor, &meta, &tr.SortKey, &tr.MostRecent, &at); err != nil {
			return nil, fmt.Errorf("transitions of task %d: %w", taskID, err)
		}
		tr.Metadata, tr.CreatedAt = meta, at.T
		out = append(out, &tr)
	}
	return out, rs.Err()
}

// allocateStepIDs takes n step ids from the PostgreSQL sequence in one round trip.
func (s *Store) allocateStepIDs(ctx context.Context, tx txer, n int) ([]int64, error) {
	rs, err := tx.query(ctx, `SELECT nextval(pg_get_serial_sequence('tasker_workflow_steps', 'step_id')) FROM generate_series(1, $1::integer)`, n)
	if err != nil {
		return nil, fmt.Errorf("allocate step ids: %w", err)
	}
	defer rs.Close()
	ids := make([]int64, 0, n)
	for rs.Next() {
		var id int64
		if err := rs.Scan(&id); err != nil {
			return nil, fmt.Errorf("allocate step ids: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("allocate step ids: %w", err)
	}
	if len(ids) != n {
		return nil, fmt.Errorf("allocate step ids: got %d of %d", len(ids), n)
	}
	return ids, nil
}

// bulkInsert writes n rows into table: COPY where the transaction supports
// it (PostgreSQL), multi-row INSERTs otherwise.
func (s *Store) bulkInsert(ctx context.Context, tx txer, table string, cols []string, n int, row func(i int) []any) error {
	if n == 0 {
		return nil
	}
	if cp, ok := tx.(copier); ok && n >= copyMinRows {
		rows := make([][]any, n)
		for i := range rows {
			rows[i] = row(i)
		}
		return cp.copyRows(ctx, table, cols, rows)
	}
	return s.insertRows(ctx, tx, "INSERT INTO "+table+" ("+strings.Join(cols, ", ")+") VALUES", len(cols), n, row, "", nil)
}

// insertRows runs a multi-row INSERT in chunks. prefix ends with VALUES; each
// row has cols parameters; suffix (ON CONFLICT, RETURNING) follows; scan, when
// not nil, reads every returned row.
func (s *Store) insertRows(ctx context.Context, q querier, prefix string, cols, n int, row func(i int) []any,
	suffix string, scan func(rows) error) error {
	for start := 0; start < n; start += chunkRows {
		end := min(start+chunkRows, n)
		var b strings.Builder
		b.WriteString(prefix)
		args := make([]any, 0, (end-start)*cols)
		for i := start; i < end; i++ {
			if i > start {
				b.WriteString(",")
			}
			b.WriteString(" (")
			if s.dialect == dialectSQLite {
				// Anonymous parameters: SQLite looks named ones ($n) up in
				// a list, which is quadratic in a statement of thousands.
				b.WriteString(strings.Repeat("?, ", cols-1) + "?")
			} else {
				b.WriteString(placeholders(len(args)+1, cols))
			}
			b.WriteString(")")
			args = append(args, row(i)...)
		}
		b.WriteString(suffix)
		if scan == nil {
			if _, err := q.exec(ctx, b.String(), args...); err != nil {
				return err
			}
			continue
		}
		rs, err := q.query(ctx, b.String(), args...)
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
