package ui

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tasker-systems/tasker/internal/template"
	"github.com/tasker-systems/tasker/taskertype"
)

// stateCount is how many tasks or steps are in one state.
type stateCount struct {
	State string
	Count int
}

// minuteBucket holds one minute of the overview's last hour.
type minuteBucket struct {
	Minute       time.Time
	Completed    int // tasks that reached complete (or resolved_manually)
	Failed       int // tasks that reached error
	StepFailures int // failed step attempts (retryable or not)
	Rescues      int // attempts whose lease expired (rescued)
}

// overview is what the overview page shows.
type overview struct {
	Now        time.Time
	ByState    []stateCount
	Total      int
	Unfinished int
	Minutes    []minuteBucket
	// Sums over the last hour.
	CompletedHour, FailedHour, StepFailuresHour, RescuesHour int
	// MaxPerMinute scales the charts (at least 1).
	MaxPerMinute int
	// Queue: every enqueue record, those due and not leased, those leased.
	QueueDepth, QueueDue, QueueLeased int
	// OldestDue is the age of the oldest due, unleased enqueue record: how
	// long the oldest ready work has waited for a worker (nil when none).
	OldestDue *time.Duration
}

// failureEvents are the step transition events of a failed attempt.
const failureEvents = `('fail_retryable', 'fail_permanent')`

// overview reads the overview's numbers at now.
func (d *db) overview(ctx context.Context, now time.Time) (*overview, error) {
	now = now.UTC()
	o := &overview{Now: now}
	for _, part := range []func(context.Context, *overview) error{d.tasksByState, d.finishedPerMinute, d.failuresPerMinute, d.queue} {
		if err := part(ctx, o); err != nil {
			return nil, err
		}
	}
	o.MaxPerMinute = 1
	for _, b := range o.Minutes {
		o.MaxPerMinute = max(o.MaxPerMinute, b.Completed+b.Failed, b.StepFailures)
	}
	return o, nil
}

// tasksByState counts every task by state.
func (d *db) tasksByState(ctx context.Context, o *overview) error {
	counts := map[string]int{}
	rs, err := d.sql.QueryContext(ctx, `SELECT state, count(*) FROM tasker_tasks GROUP BY state`)
	if err != nil {
		return fmt.Errorf("tasks by state: %w", err)
	}
	for rs.Next() {
		var s string
		var n int
		if err := rs.Scan(&s, &n); err != nil {
			rs.Close()
			return err
		}
		counts[s] = n
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return err
	}
	for _, s := range taskertype.TaskStates() {
		n := counts[string(s)]
		o.ByState = append(o.ByState, stateCount{State: string(s), Count: n})
		o.Total += n
		if !s.Terminal() {
			o.Unfinished += n
		}
	}
	return nil
}

// minutes makes the last hour's buckets (once) and returns their start
// and an index by minute.
func (o *overview) minutes() (time.Time, map[string]int) {
	start := o.Now.Truncate(time.Minute).Add(-59 * time.Minute)
	if o.Minutes == nil {
		for i := range 60 {
			o.Minutes = append(o.Minutes, minuteBucket{Minute: start.Add(time.Duration(i) * time.Minute)})
		}
	}
	idx := make(map[string]int, 60)
	for i, b := range o.Minutes {
		idx[b.Minute.Format("2006-01-02T15:04")] = i
	}
	return start, idx
}

// finishedPerMinute counts the tasks finished in each minute of the last
// hour.
func (d *db) finishedPerMinute(ctx context.Context, o *overview) error {
	start, idx := o.minutes()
	// Finished tasks per minute, through the index on completed_at
	// (migrations 0011 on PostgreSQL, 0005 on SQLite, where the index
	// holds the state too).
	q := `SELECT ` + d.minute("completed_at") + `, state, count(*) FROM tasker_tasks
		WHERE completed_at >= $1 GROUP BY 1, 2`
	rs, err := d.sql.QueryContext(ctx, q, d.t(start))
	if err != nil {
		return fmt.Errorf("finished tasks per minute: %w", err)
	}
	for rs.Next() {
		var m nullTime
		var s string
		var n int
		if err := rs.Scan(&m, &s, &n); err != nil {
			rs.Close()
			return err
		}
		i, ok := idx[m.T.Format("2006-01-02T15:04")]
		if !ok {
			continue
		}
		switch taskertype.TaskState(s) {
		case taskertype.TaskStateComplete, taskertype.TaskStateResolvedManually:
			o.Minutes[i].Completed += n
			o.CompletedHour += n
		case taskertype.TaskStateError:
			o.Minutes[i].Failed += n
			o.FailedHour += n
		}
	}
	rs.Close()
	return rs.Err()
}

// failuresPerMinute counts the failed step attempts and lease rescues in
// each minute of the last hour.
func (d *db) failuresPerMinute(ctx context.Context, o *overview) error {
	start, idx := o.minutes()
	// Failed attempts and rescues per minute (partial index of failure
	// transitions, migration 0011/0005).
	rs, err := d.sql.QueryContext(ctx, `SELECT `+d.minute("created_at")+`, count(*),
		coalesce(sum(CASE WHEN `+d.jsonText("metadata", "error", "kind")+` = 'lease_expired' THEN 1 ELSE 0 END), 0)
		FROM tasker_workflow_step_transitions
		WHERE event IN `+failureEvents+` AND created_at >= $1 GROUP BY 1`, d.t(start))
	if err != nil {
		return fmt.Errorf("failed attempts per minute: %w", err)
	}
	for rs.Next() {
		var m nullTime
		var n, r int
		if err := rs.Scan(&m, &n, &r); err != nil {
			rs.Close()
			return err
		}
		if i, ok := idx[m.T.Format("2006-01-02T15:04")]; ok {
			o.Minutes[i].StepFailures += n
			o.Minutes[i].Rescues += r
			o.StepFailuresHour += n
			o.RescuesHour += r
		}
	}
	rs.Close()
	return rs.Err()
}

// queue reads the queue's depth and the age of its oldest due record (the
// queue_* columns of the tasks, migration 0021).
func (d *db) queue(ctx context.Context, o *overview) error {
	now := o.Now
	var oldest nullTime
	var due, leased sql.NullInt64
	err := d.sql.QueryRowContext(ctx, `SELECT count(*),
		sum(CASE WHEN queue_run_at <= $1 AND (queue_lease_expires_at IS NULL OR queue_lease_expires_at <= $1) THEN 1 ELSE 0 END),
		sum(CASE WHEN queue_lease_expires_at > $1 THEN 1 ELSE 0 END),
		min(CASE WHEN queue_run_at <= $1 AND (queue_lease_expires_at IS NULL OR queue_lease_expires_at <= $1) THEN queue_run_at END)
		FROM tasker_tasks WHERE queue_run_at IS NOT NULL`, d.t(now)).Scan(&o.QueueDepth, &due, &leased, &oldest)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	o.QueueDue, o.QueueLeased = int(due.Int64), int(leased.Int64)
	if oldest.Valid {
		age := max(now.Sub(oldest.T), 0)
		o.OldestDue = &age
	}
	return nil
}

// taskFilter selects tasks for the list page. Zero values mean "any".
type taskFilter struct {
	Namespace, Name, Version string
	State                    string
	Tag                      string
	From, To                 *time.Time
	// After pages to older tasks (task_id < After), Before to newer ones.
	After, Before int64
	Limit         int
}

// taskRow is one row of the task list.
type taskRow struct {
	ID                       int64
	Namespace, Name, Version string
	State                    string
	Tags                     []string
	IdempotencyKey           string
	Initiator                string
	Priority                 int
	CreatedAt                time.Time
	CompletedAt              *time.Time
}

const taskRowCols = `t.task_id, t.namespace, t.name, t.version, t.state, t.tags, t.idempotency_key, t.initiator,
	t.priority, t.created_at, t.completed_at`

func scanTaskRow(sc interface{ Scan(...any) error }) (*taskRow, error) {
	var r taskRow
	var tags []byte
	var key sql.NullString
	var created, completed nullTime
	if err := sc.Scan(&r.ID, &r.Namespace, &r.Name, &r.Version, &r.State, &tags, &key, &r.Initiator,
		&r.Priority, &created, &completed); err != nil {
		return nil, err
	}
	if len(tags) > 0 {
		_ = json.Unmarshal(tags, &r.Tags)
	}
	r.IdempotencyKey = key.String
	r.CreatedAt, r.CompletedAt = created.T, completed.ptr()
	return &r, nil
}

// listTasks returns a page of tasks, newest first, and whether older and
// newer pages exist.
func (d *db) listTasks(ctx context.Context, f *taskFilter) (rows []*taskRow, older, newer bool, err error) {
	var a args
	if f.Namespace != "" {
		a.add("t.namespace = ?", f.Namespace)
	}
	if f.Name != "" {
		a.add("t.name = ?", f.Name)
	}
	if f.Version != "" {
		a.add("t.version = ?", f.Version)
	}
	if f.State != "" {
		a.add("t.state = ?", f.State)
		if !taskertype.TaskState(f.State).Terminal() {
			// Lets PostgreSQL use its index of unfinished tasks.
			a.where = append(a.where, "t.completed_at IS NULL")
		}
	}
	if f.Tag != "" {
		if d.dialect == "sqlite" {
			a.add("EXISTS (SELECT 1 FROM json_each(t.tags) WHERE json_each.value = ?)", f.Tag)
		} else {
			b, _ := json.Marshal([]string{f.Tag})
			a.add("t.tags @> ?::jsonb", string(b))
		}
	}
	if f.From != nil {
		a.add("t.created_at >= ?", d.t(*f.From))
	}
	if f.To != nil {
		a.add("t.created_at < ?", d.t(*f.To))
	}
	limit := f.Limit
	if limit <= 0 || limit > 500 {
		limit = 50
	}
	order := "DESC"
	if f.Before > 0 {
		a.add("t.task_id > ?", f.Before)
		order = "ASC"
	} else if f.After > 0 {
		a.add("t.task_id < ?", f.After)
	}
	q := `SELECT ` + taskRowCols + ` FROM tasker_tasks t` + a.clause() +
		` ORDER BY t.task_id ` + order + ` LIMIT ` + a.next(limit+1)
	rs, err := d.sql.QueryContext(ctx, q, a.vals...)
	if err != nil {
		return nil, false, false, fmt.Errorf("list tasks: %w", err)
	}
	defer rs.Close()
	for rs.Next() {
		r, err := scanTaskRow(rs)
		if err != nil {
			return nil, false, false, fmt.Errorf("list tasks: %w", err)
		}
		rows = append(rows, r)
	}
	if err := rs.Err(); err != nil {
		return nil, false, false, err
	}
	more := len(rows) > limit
	if more {
		rows = rows[:limit]
	}
	if order == "ASC" {
		for i, j := 0, len(rows)-1; i < j; i, j = i+1, j-1 {
			rows[i], rows[j] = rows[j], rows[i]
		}
		return rows, true, more, nil
	}
	return rows, more, f.After > 0, nil
}

// findTask returns the id of the task whose id or idempotency key is q,
// or 0.
func (d *db) findTask(ctx context.Context, q string) (int64, error) {
	var id int64
	err := d.sql.QueryRowContext(ctx, `SELECT task_id FROM tasker_tasks WHERE idempotency_key = $1`, q).Scan(&id)
	if err == nil {
		return id, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return 0, err
	}
	var n int64
	if _, perr := fmt.Sscanf(q, "%d", &n); perr == nil && fmt.Sprint(n) == strings.TrimPrefix(q, "#") && n > 0 {
		err = d.sql.QueryRowContext(ctx, `SELECT task_id FROM tasker_tasks WHERE task_id = $1`, n).Scan(&id)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return 0, err
		}
	}
	return 0, nil
}

// taskHead is a task with its step counts.
type taskHead struct {
	*taskertype.Task
	Seq        int
	StepCounts []stateCount
	Steps      int
	// StepSeq sums the steps' transition counters: it changes whenever a
	// step changes state.
	StepSeq int64
}

// Kept says how long the task is kept (retention): until when once it
// finished, for how long after it finishes before.
func (h *taskHead) Kept() string {
	t := h.Task
	keep := func(secs *int64) string {
		if secs == nil {
			return "for ever"
		}
		return template.FormatRetention(*secs)
	}
	switch {
	case t.KeepUntil != nil:
		return "kept until " + fmtTime(*t.KeepUntil)
	case t.CompletedAt != nil || (t.RetentionSeconds == nil && t.RetentionFailedSeconds == nil):
		return "kept for ever"
	}
	return fmt.Sprintf("kept %s after it finishes (%s if it fails)", keep(t.RetentionSeconds), keep(t.RetentionFailedSeconds))
}

// LiveVersion identifies the task's current state for the live updates.
func (h *taskHead) LiveVersion() string { return fmt.Sprintf("%d.%d", h.Seq, h.StepSeq) }

// taskHead reads a task (nil when missing) with its steps counted by state.
func (d *db) taskHead(ctx context.Context, id int64) (*taskHead, error) {
	var t taskertype.Task
	var state string
	var ctxJSON, tags []byte
	var key sql.NullString
	var created, updated, completed, keepUntil nullTime
	h := &taskHead{Task: &t}
	err := d.sql.QueryRowContext(ctx, `SELECT task_id, namespace, name, version, state, context, initiator, source_system,
		reason, tags, priority, idempotency_key, max_parallel_steps, created_at, updated_at, completed_at, transition_seq,
		retention_seconds, retention_failed_seconds, keep_until
		FROM tasker_tasks WHERE task_id = $1`, id).Scan(&t.ID, &t.Namespace, &t.Name, &t.Version, &state, &ctxJSON,
		&t.Initiator, &t.SourceSystem, &t.Reason, &tags, &t.Priority, &key, &t.MaxParallelSteps, &created, &updated,
		&completed, &h.Seq, &t.RetentionSeconds, &t.RetentionFailedSeconds, &keepUntil)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("task %d: %w", id, err)
	}
	t.State = taskertype.TaskState(state)
	t.Context = json.RawMessage(ctxJSON)
	_ = json.Unmarshal(tags, &t.Tags)
	t.IdempotencyKey = key.String
	t.CreatedAt, t.UpdatedAt, t.CompletedAt = created.T, updated.T, completed.ptr()
	t.KeepUntil = keepUntil.ptr()

	counts := map[string]int{}
	rs, err := d.sql.QueryContext(ctx, `SELECT state, count(*), coalesce(sum(transition_seq), 0)
		FROM tasker_workflow_steps WHERE task_id = $1 GROUP BY state`, id)
	if err != nil {
		return nil, fmt.Errorf("steps of task %d: %w", id, err)
	}
	defer rs.Close()
	for rs.Next() {
		var s string
		var n int
		var seq int64
		if err := rs.Scan(&s, &n, &seq); err != nil {
			return nil, err
		}
		counts[s] = n
		h.StepSeq += seq
		h.Steps += n
	}
	if err := rs.Err(); err != nil {
		return nil, err
	}
	for _, s := range taskertype.StepStates() {
		if n := counts[string(s)]; n > 0 {
			h.StepCounts = append(h.StepCounts, stateCount{State: string(s), Count: n})
		}
	}
	return h, nil
}

// stepRow is one step in the graph or the step table.
type stepRow struct {
	ID            int64
	Name          string
	HandlerClass  string
	State         string
	Attempts      int
	MaxAttempts   int
	LastAttempted *time.Time
	CompletedAt   *time.Time
}

// steps returns steps of a task in id order: those in state (any when
// ""), skipping offset, at most limit (all when limit <= 0).
func (d *db) steps(ctx context.Context, taskID int64, state string, offset, limit int) ([]*stepRow, error) {
	var a args
	a.add("task_id = ?", taskID)
	if state != "" {
		a.add("state = ?", state)
	}
	q := `SELECT step_id, name, handler_class, state, attempts, max_attempts, last_attempted_at, completed_at
		FROM tasker_workflow_steps` + a.clause() + ` ORDER BY step_id`
	if limit > 0 {
		q += ` LIMIT ` + a.next(limit) + ` OFFSET ` + a.next(offset)
	}
	rs, err := d.sql.QueryContext(ctx, q, a.vals...)
	if err != nil {
		return nil, fmt.Errorf("steps of task %d: %w", taskID, err)
	}
	defer rs.Close()
	var out []*stepRow
	for rs.Next() {
		var s stepRow
		var last, done nullTime
		if err := rs.Scan(&s.ID, &s.Name, &s.HandlerClass, &s.State, &s.Attempts, &s.MaxAttempts, &last, &done); err != nil {
			return nil, err
		}
		s.LastAttempted, s.CompletedAt = last.ptr(), done.ptr()
		out = append(out, &s)
	}
	return out, rs.Err()
}

// edges returns the task's dependency edges as (parent, child) step ids.
func (d *db) edges(ctx context.Context, taskID int64) ([][2]int64, error) {
	rs, err := d.sql.QueryContext(ctx, `SELECT from_step_id, to_step_id FROM tasker_workflow_step_edges WHERE task_id = $1`, taskID)
	if err != nil {
		return nil, fmt.Errorf("edges of task %d: %w", taskID, err)
	}
	defer rs.Close()
	var out [][2]int64
	for rs.Next() {
		var e [2]int64
		if err := rs.Scan(&e[0], &e[1]); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rs.Err()
}

// stepStates returns the states of every step of a task in id order.
func (d *db) stepStates(ctx context.Context, taskID int64) ([]string, error) {
	rs, err := d.sql.QueryContext(ctx, `SELECT state FROM tasker_workflow_steps WHERE task_id = $1 ORDER BY step_id`, taskID)
	if err != nil {
		return nil, fmt.Errorf("step states of task %d: %w", taskID, err)
	}
	defer rs.Close()
	var out []string
	for rs.Next() {
		var s string
		if err := rs.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rs.Err()
}

// stepDetail is everything the step panel shows.
type stepDetail struct {
	*taskertype.Step
	Children    []string
	Transitions []*taskertype.Transition
}

// step reads one step of a task by name (nil when missing), with its
// parents, children and transitions.
func (d *db) step(ctx context.Context, taskID int64, name string) (*stepDetail, error) {
	var s taskertype.Step
	var state string
	var cfg, inputs, results, errDoc []byte
	var backoff sql.NullInt64
	var owner sql.NullString
	var last, next, lease, created, updated, done nullTime
	err := d.sql.QueryRowContext(ctx, `SELECT step_id, task_id, name, handler_class, handler_config, state, retryable,
		attempts, max_attempts, timeout_seconds, skippable, inputs, results, error, backoff_request_seconds,
		last_attempted_at, next_retry_at, lease_owner, lease_expires_at, created_at, updated_at, completed_at
		FROM tasker_workflow_steps WHERE task_id = $1 AND name = $2`, taskID, name).Scan(&s.ID, &s.TaskID, &s.Name,
		&s.HandlerClass, &cfg, &state, &s.Retryable, &s.Attempts, &s.MaxAttempts, &s.TimeoutSeconds, &s.Skippable,
		&inputs, &results, &errDoc, &backoff, &last, &next, &owner, &lease, &created, &updated, &done)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("step %q of task %d: %w", name, taskID, err)
	}
	s.State = taskertype.StepState(state)
	s.HandlerConfig, s.Inputs, s.Results, s.Error = cfg, inputs, results, errDoc
	if backoff.Valid {
		v := int(backoff.Int64)
		s.BackoffRequestSeconds = &v
	}
	s.LeaseOwner = owner.String
	s.LastAttemptedAt, s.NextRetryAt, s.LeaseExpiresAt = last.ptr(), next.ptr(), lease.ptr()
	s.CreatedAt, s.UpdatedAt, s.CompletedAt = created.T, updated.T, done.ptr()
	det := &stepDetail{Step: &s}

	rs, err := d.sql.QueryContext(ctx, `SELECT p.name, 0 FROM tasker_workflow_step_edges e
		JOIN tasker_workflow_steps p ON p.step_id = e.from_step_id WHERE e.to_step_id = $1
		UNION ALL
		SELECT c.name, 1 FROM tasker_workflow_step_edges e
		JOIN tasker_workflow_steps c ON c.step_id = e.to_step_id WHERE e.from_step_id = $1 AND e.task_id = $2
		ORDER BY 2, 1`, s.ID, taskID)
	if err != nil {
		return nil, fmt.Errorf("edges of step %q: %w", name, err)
	}
	for rs.Next() {
		var n string
		var child int
		if err := rs.Scan(&n, &child); err != nil {
			rs.Close()
			return nil, err
		}
		if child == 1 {
			det.Children = append(det.Children, n)
		} else {
			s.Parents = append(s.Parents, n)
		}
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return nil, err
	}

	rs, err = d.sql.QueryContext(ctx, `SELECT id, from_state, to_state, event, reason, actor, metadata, sort_key, created_at
		FROM tasker_workflow_step_transitions WHERE step_id = $1 ORDER BY sort_key`, s.ID)
	if err != nil {
		return nil, fmt.Errorf("transitions of step %q: %w", name, err)
	}
	defer rs.Close()
	for rs.Next() {
		tr := &taskertype.Transition{TaskID: taskID, StepID: s.ID, StepName: s.Name}
		var from sql.NullString
		var meta []byte
		var at nullTime
		if err := rs.Scan(&tr.ID, &from, &tr.ToState, &tr.Event, &tr.Reason, &tr.Actor, &meta, &tr.SortKey, &at); err != nil {
			return nil, err
		}
		tr.FromState, tr.Metadata, tr.CreatedAt = from.String, meta, at.T
		det.Transitions = append(det.Transitions, tr)
	}
	return det, rs.Err()
}
