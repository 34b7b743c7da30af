package sqlstore

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"github.com/jackc/pgx/v5"
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

// TaskCreate implements store.Store.
func (s *Store) TaskCreate(ctx context.Context, p *store.TaskCreateParams) (*store.TaskCreateResult, error) {
	now := utc(p.Now)
	var taskID int64
	created := false
	err := s.inTx(ctx, func(tx txer) error {
		if p.IdempotencyKey != "" {
			err := tx.queryRow(ctx, `SELECT task_id FROM tasker_tasks WHERE idempotency_key = $1`, p.IdempotencyKey).Scan(&taskID)
			if err == nil {
				return nil
			}
			if !isNoRows(err) {
				return fmt.Errorf("look up idempotency key: %w", err)
			}
		}
		id, err := s.taskInsert(ctx, tx, p, now)
		if err != nil {
			return err
		}
		taskID, created = id, true
		return nil
	})
	if err != nil && p.IdempotencyKey != "" && isUniqueViolation(err) {
		// Another process created the task with this key concurrently.
		if qerr := s.db.queryRow(ctx, `SELECT task_id FROM tasker_tasks WHERE idempotency_key = $1`, p.IdempotencyKey).Scan(&taskID); qerr == nil {
			err, created = nil, false
		}
	}
	if err != nil {
		return nil, fmt.Errorf("create task %s/%s@%s: %w", p.Namespace, p.Name, p.Version, err)
	}
	task, err := s.TaskGet(ctx, taskID)
	if err != nil {
		return nil, err
	}
	if p.SkipStepsResult {
		return &store.TaskCreateResult{Task: task, Created: created}, nil
	}
	steps, err := s.StepList(ctx, taskID)
	if err != nil {
		return nil, err
	}
	return &store.TaskCreateResult{Task: task, Steps: steps, Created: created}, nil
}

// TaskCreateTx implements store.TxTaskCreator (PostgreSQL only): the task
// is written with tx's connection and becomes visible when the caller
// commits tx. tx must be on this store's database, with the same
// search_path.
func (s *Store) TaskCreateTx(ctx context.Context, tx pgx.Tx, p *store.TaskCreateParams) (*store.TaskCreateResult, error) {
	if s.dialect != dialectPostgres {
		return nil, fmt.Errorf("create task in a caller's transaction: only on PostgreSQL")
	}
	t := &pgxTx{pgxQ: pgxQ{q: tx, rt: &s.roundTrips}, tx: tx}
	now := utc(p.Now)
	if p.IdempotencyKey != "" {
		var taskID int64
		err := t.queryRow(ctx, `SELECT task_id FROM tasker_tasks WHERE idempotency_key = $1`, p.IdempotencyKey).Scan(&taskID)
		if err == nil {
			task, err := s.taskGet(ctx, t, taskID)
			if err != nil {
				return nil, err
			}
			return &store.TaskCreateResult{Task: task}, nil
		}
		if !isNoRows(err) {
			return nil, fmt.Errorf("look up idempotency key: %w", err)
		}
	}
	id, err := s.taskInsert(ctx, t, p, now)
	if err != nil {
		return nil, fmt.Errorf("create task %s/%s@%s: %w", p.Namespace, p.Name, p.Version, err)
	}
	task, err := s.taskGet(ctx, t, id)
	if err != nil {
		return nil, err
	}
	return &store.TaskCreateResult{Task: task, Created: true}, nil
}

// namedTaskUpsert writes a template's namespace and named task (new, or
// changed since its last task) and returns the named task's id.
func (s *Store) namedTaskUpsert(ctx context.Context, tx txer, p *store.TaskCreateParams, now time.Time) (int64, error) {
	var nsID, namedTaskID int64
	if err := tx.queryRow(ctx, `INSERT INTO tasker_namespaces (name, created_at) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING namespace_id`, p.Namespace, s.t(now)).Scan(&nsID); err != nil {
		return 0, fmt.Errorf("upsert namespace: %w", err)
	}
	if err := tx.queryRow(ctx, `INSERT INTO tasker_named_tasks (namespace_id, name, version, description, template, created_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (namespace_id, name, version) DO UPDATE SET description = excluded.description, template = excluded.template
RETURNING named_task_id`, nsID, p.Name, p.Version, p.Description, s.j(p.TemplateJSON), s.t(now)).Scan(&namedTaskID); err != nil {
		return 0, fmt.Errorf("upsert named task: %w", err)
	}
	return namedTaskID, nil
}

func (s *Store) taskInsert(ctx context.Context, tx txer, p *store.TaskCreateParams, now time.Time) (int64, error) {
	var namedTaskID int64
	// After a template's first task its named task exists unchanged: find
	// it without writing. The upserts of namedTaskUpsert lock the rows they
	// touch until commit, which made concurrent creations of one template wait for each
	// other's commit (a third of creation throughput at 16 creators).
	var same bool
	err := tx.queryRow(ctx, `SELECT nt.named_task_id, COALESCE(nt.description = $4 AND nt.template IS NOT DISTINCT FROM $5, false)
FROM tasker_named_tasks nt JOIN tasker_namespaces ns ON ns.namespace_id = nt.namespace_id
WHERE ns.name = $1 AND nt.name = $2 AND nt.version = $3`, p.Namespace, p.Name, p.Version, p.Description,
		s.j(p.TemplateJSON)).Scan(&namedTaskID, &same)
	if err != nil && !isNoRows(err) {
		return 0, fmt.Errorf("read named task: %w", err)
	}
	if err != nil || !same {
		if namedTaskID, err = s.namedTaskUpsert(ctx, tx, p, now); err != nil {
			return 0, err
		}
	}
	// Named steps exist after the template's first task: read them, and
	// upsert only those missing or changed (rewriting a thousand unchanged
	// rows on every creation cost more than the read).
	namedSteps := map[string]int64{}
	known := map[string]string{}
	rs, err := tx.query(ctx, `SELECT named_step_id, name, handler_class FROM tasker_named_steps WHERE named_task_id = $1`, namedTaskID)
	if err != nil {
		return 0, fmt.Errorf("read named steps: %w", err)
	}
	for rs.Next() {
		var id int64
		var name, class string
		if err := rs.Scan(&id, &name, &class); err != nil {
			rs.Close()
			return 0, fmt.Errorf("read named steps: %w", err)
		}
		namedSteps[name], known[name] = id, class
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return 0, fmt.Errorf("read named steps: %w", err)
	}
	var upsert []store.StepSpec
	for _, st := range p.Steps {
		if class, ok := known[st.Name]; !ok || class != st.HandlerClass {
			upsert = append(upsert, st)
		}
	}
	err = s.insertRows(ctx, tx, `INSERT INTO tasker_named_steps (named_task_id, name, handler_class) VALUES`, 3, len(upsert),
		func(i int) []any { return []any{namedTaskID, upsert[i].Name, upsert[i].HandlerClass} },
		` ON CONFLICT (named_task_id, name) DO UPDATE SET handler_class = excluded.handler_class RETURNING named_step_id, name`,
		func(r rows) error {
			var id int64
			var name string
			if err := r.Scan(&id, &name); err != nil {
				return err
			}
			namedSteps[name] = id
			return nil
		})
	if err != nil {
		return 0, fmt.Errorf("upsert named steps: %w", err)
	}

	tags := p.Tags
	if tags == nil {
		tags = []string{}
	}
	tagJSON, _ := json.Marshal(tags)
	var idem any
	if p.IdempotencyKey != "" {
		idem = p.IdempotencyKey
	}
	var taskID int64
	if err := tx.queryRow(ctx, `INSERT INTO tasker_tasks (named_task_id, namespace, name, version, state, transition_seq,
	context, initiator, source_system, reason, tags, priority, idempotency_key, max_parallel_steps, created_at, updated_at)
VALUES ($1, $2, $3, $4, 'pending', 1, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) RETURNING task_id`,
		namedTaskID, p.Namespace, p.Name, p.Version, s.j(p.Context), p.Initiator, p.SourceSystem, p.Reason,
		s.j(tagJSON), p.Priority, idem, p.MaxParallelSteps, s.t(now)).Scan(&taskID); err != nil {
		return 0, fmt.Errorf("insert task: %w", err)
	}
	if _, err := tx.exec(ctx, `INSERT INTO tasker_task_transitions (task_id, from_state, to_state, event, reason, actor, sort_key, created_at)
VALUES ($1, NULL, 'pending', 'initialize', $2, $3, 1, $4)`, taskID, p.Reason, p.Actor, s.t(now)); err != nil {
		return 0, fmt.Errorf("insert task transition: %w", err)
	}

	stepIDs := make(map[string]int64, len(p.Steps))
	stepRow := func(i int) []any {
		st := p.Steps[i]
		state := string(taskertype.StepStatePending)
		var completed any
		if st.Bypassed {
			state = string(taskertype.StepStateResolvedManually)
			completed = s.t(now)
		}
		inputs := st.Inputs
		if len(inputs) == 0 {
			inputs = json.RawMessage(`{}`)
		}
		return []any{taskID, namedSteps[st.Name], st.Name, st.HandlerClass, s.j(st.HandlerConfig), state, 1,
			st.Retryable, st.MaxAttempts, st.TimeoutSeconds, st.Skippable, s.j(inputs), s.t(now), s.t(now), completed}
	}
	cp, canCopy := tx.(copier)
	if canCopy && len(p.Steps) >= copyMinRows {
		// PostgreSQL: take the ids from the sequence, then COPY the rows.
		ids, err := s.allocateStepIDs(ctx, tx, len(p.Steps))
		if err != nil {
			return 0, err
		}
		rows := make([][]any, len(p.Steps))
		for i, st := range p.Steps {
			stepIDs[st.Name] = ids[i]
			rows[i] = append([]any{ids[i]}, stepRow(i)...)
		}
		err = cp.copyRows(ctx, "tasker_workflow_steps", []string{"step_id", "task_id", "named_step_id", "name", "handler_class",
			"handler_config", "state", "transition_seq", "retryable", "max_attempts", "timeout_seconds", "skippable", "inputs",
			"created_at", "updated_at", "completed_at"}, rows)
	} else {
		err = s.insertRows(ctx, tx, `INSERT INTO tasker_workflow_steps (task_id, named_step_id, name, handler_class, handler_config,
	state, transition_seq, retryable, max_attempts, timeout_seconds, skippable, inputs, created_at, updated_at, completed_at) VALUES`, 15, len(p.Steps),
			stepRow, ` RETURNING step_id, name`,
			func(r rows) error {
				var id int64
				var name string
				if err := r.Scan(&id, &name); err != nil {
					return err
				}
				stepIDs[name] = id
				return nil
			})
	}
	if err != nil {
		return 0, fmt.Errorf("insert steps: %w", err)
	}

	type edge struct{ from, to int64 }
	var edges []edge
	for _, st := range p.Steps {
		for _, parent := range st.Parents {
			from, ok := stepIDs[parent]
			if !ok {
				return 0, &taskertype.RequestError{Step: st.Name, Msg: fmt.Sprintf("depends on unknown step %q", parent)}
			}
			edges = append(edges, edge{from: from, to: stepIDs[st.Name]})
		}
	}
	// Each step's edges go in newest parent first. A readiness check reads
	// them in that (physical) order and stops at the first parent not
	// complete; claims take steps in id order, so the newest parents are
	// the ones still running. A claim that reached a 10,000-way join while
	// its last parents ran read ~8,000 complete parents first (11 ms).
	slices.SortFunc(edges, func(a, b edge) int {
		return cmp.Or(cmp.Compare(a.to, b.to), cmp.Compare(b.from, a.from))
	})
	err = s.bulkInsert(ctx, tx, "tasker_workflow_step_edges", []string{"task_id", "from_step_id", "to_step_id"}, len(edges),
		func(i int) []any { return []any{taskID, edges[i].from, edges[i].to} })
	if err != nil {
		return 0, fmt.Errorf("insert step edges: %w", err)
	}

	err = s.bulkInsert(ctx, tx, "tasker_workflow_step_transitions", []string{"step_id", "task_id", "from_state", "to_state",
		"event", "reason", "actor", "sort_key", "created_at"}, len(p.Steps),
		func(i int) []any {
			st := p.Steps[i]
			to, event, reason := string(taskertype.StepStatePending), "initialize", ""
			if st.Bypassed {
				to, event, reason = string(taskertype.StepStateResolvedManually), "bypass", "bypassed by task request"
			}
			return []any{stepIDs[st.Name], taskID, nil, to, event, reason, p.Actor, 1, s.t(now)}
		})
	if err != nil {
		return 0, fmt.Errorf("insert step transitions: %w", err)
	}
	if err := s.queueApply(ctx, tx, taskID, p.Queue, now); err != nil {
		return 0, err
	}
	return taskID, nil
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
