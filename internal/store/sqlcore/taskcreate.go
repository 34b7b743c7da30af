package sqlcore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tasker-systems/tasker/internal/store"
	"github.com/tasker-systems/tasker/taskertype"
)

// TaskCreate implements store.Store: TaskCreateMany of one task.
func (s *Core) TaskCreate(ctx context.Context, p *store.TaskCreateParams) (*store.TaskCreateResult, error) {
	res, err := s.taskCreateMany(ctx, []*store.TaskCreateParams{p})
	if err != nil {
		return nil, fmt.Errorf("create task %s/%s@%s: %w", p.Namespace, p.Name, p.Version, err)
	}
	return res[0], nil
}

// TaskCreateMany implements store.Store: every task of ps is written in
// one transaction, each kind of row of all the tasks together (one
// multi-row INSERT, or COPY on PostgreSQL, per table).
//
// The multi-row INSERTs here are built per call (their VALUES lists have
// one row per task or step): their fixed parts are the Go fragments below,
// the same SQL on both databases.
func (s *Core) TaskCreateMany(ctx context.Context, ps []*store.TaskCreateParams) ([]*store.TaskCreateResult, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	res, err := s.taskCreateMany(ctx, ps)
	if err != nil {
		return nil, fmt.Errorf("create %d tasks: %w", len(ps), err)
	}
	return res, nil
}

func (s *Core) taskCreateMany(ctx context.Context, ps []*store.TaskCreateParams) ([]*store.TaskCreateResult, error) {
	for i, p := range ps {
		if p == nil {
			return nil, fmt.Errorf("task %d of %d: no parameters", i+1, len(ps))
		}
	}
	if err := s.commitNamed(ctx, ps); err != nil {
		return nil, err
	}
	if w, ok := s.d.(RoundWriter); ok && len(ps) < RoundMaxTasks {
		res, err := s.writeRound(ctx, w, ps)
		if !errors.Is(err, errRoundKeyed) && !(err != nil && IsUniqueViolation(err)) {
			return res, err
		}
		// A key names a task already (or another process wrote one of the
		// keys meanwhile): the transaction below looks the keys up and
		// applies their windows.
	}
	var ids []int64
	var created []bool
	write := func(tx Tx) error {
		var err error
		ids, created, err = s.taskWrite(ctx, tx, ps)
		return err
	}
	err := s.InTx(ctx, write)
	if err != nil && IsUniqueViolation(err) && slices.ContainsFunc(ps, hasKey) {
		// Another process created a task with one of the keys
		// concurrently: written again, the lookup finds it.
		err = s.InTx(ctx, write)
	}
	if err != nil {
		return nil, err
	}
	return s.createResults(ctx, s.db, ps, ids, created, true)
}

func hasKey(p *store.TaskCreateParams) bool { return p.IdempotencyKey != "" }

// commitNamed writes, in a short transaction of its own, the named tasks
// and steps of the templates of ps this process has not cached (a
// template's first creations here), before the transaction that writes
// the tasks. Their upserts lock the rows they touch until commit: inside
// that transaction, concurrent first creations of a template (a backfill
// from several producers) waited for each other's whole batch, one after
// the other. The rows are never deleted, so writing them ahead is
// harmless when the tasks' transaction then fails.
func (s *Core) commitNamed(ctx context.Context, ps []*store.TaskCreateParams) error {
	// One cache lookup per template (its key copies the stored document),
	// and the steps of each of its tasks checked against what is cached.
	type tmplKey struct{ ns, name, version string }
	cached := map[tmplKey]*cachedNamed{}
	var todo []*newTask
	for _, p := range ps {
		k := tmplKey{p.Namespace, p.Name, p.Version}
		c, looked := cached[k]
		if !looked {
			c = s.named.get(namedKey{p.Namespace, p.Name, p.Version, p.Description, string(p.TemplateJSON)})
			cached[k] = c
		}
		if c == nil || !coversSteps(c.classes, p.Steps) {
			todo = append(todo, &newTask{p: p})
		}
	}
	if len(todo) == 0 {
		return nil
	}
	return s.InTx(ctx, func(tx Tx) error { return s.namedTasks(ctx, tx, todo) })
}

// TaskCreateIn is TaskCreate inside tx, a transaction the caller began
// and commits (store.TxTaskCreator). The result has no steps.
func (s *Core) TaskCreateIn(ctx context.Context, tx Tx, p *store.TaskCreateParams) (*store.TaskCreateResult, error) {
	ps := []*store.TaskCreateParams{p}
	ids, created, err := s.taskWrite(ctx, tx, ps)
	if err != nil {
		return nil, fmt.Errorf("create task %s/%s@%s: %w", p.Namespace, p.Name, p.Version, err)
	}
	res, err := s.createResults(ctx, tx, ps, ids, created, false)
	if err != nil {
		return nil, err
	}
	return res[0], nil
}

// createResults reads the tasks ids (one per params, in order) back, in
// one query, and their steps when withSteps and the params want them.
func (s *Core) createResults(ctx context.Context, q Querier, ps []*store.TaskCreateParams, ids []int64, created []bool,
	withSteps bool) ([]*store.TaskCreateResult, error) {
	byID := make(map[int64]*taskertype.Task, len(ids))
	if len(ids) == 1 {
		t, err := s.TaskGetIn(ctx, q, ids[0])
		if err != nil {
			return nil, err
		}
		byID[t.ID] = t
	} else {
		rs, err := q.Query(ctx, s.Q("TasksByID"), s.IDs(ids))
		if err != nil {
			return nil, fmt.Errorf("read created tasks: %w", err)
		}
		for rs.Next() {
			t, err := ScanTask(rs)
			if err != nil {
				rs.Close()
				return nil, fmt.Errorf("read created tasks: %w", err)
			}
			byID[t.ID] = t
		}
		rs.Close()
		if err := rs.Err(); err != nil {
			return nil, fmt.Errorf("read created tasks: %w", err)
		}
	}
	out := make([]*store.TaskCreateResult, len(ps))
	for i, p := range ps {
		t, ok := byID[ids[i]]
		if !ok {
			return nil, &taskertype.TaskNotFoundError{TaskID: ids[i]}
		}
		task := *t // each result its own copy: two params may name one task
		out[i] = &store.TaskCreateResult{Task: &task, Created: created[i]}
		if withSteps && !p.SkipStepsResult {
			steps, err := s.StepList(ctx, ids[i])
			if err != nil {
				return nil, err
			}
			out[i].Steps = steps
		}
	}
	return out, nil
}

// newTask is one task taskWrite inserts: its params, its row's id and its
// steps' ids by name.
type newTask struct {
	p       *store.TaskCreateParams
	now     time.Time
	named   *namedTask
	id      int64
	stepIDs map[string]int64
}

// taskWrite writes the tasks of ps inside tx and returns their ids (in the
// order of ps) and which were created. A task whose idempotency key exists
// is not written (created false); a later params with the key of an earlier
// one in ps gets the earlier one's task.
func (s *Core) taskWrite(ctx context.Context, tx Tx, ps []*store.TaskCreateParams) ([]int64, []bool, error) {
	ids := make([]int64, len(ps))
	created := make([]bool, len(ps))
	existing, err := s.keyedTasks(ctx, tx, ps)
	if err != nil {
		return nil, nil, err
	}
	first := map[string]int{} // key -> position in ps of its new task
	sameAs := map[int]int{}   // position in ps -> position of the params it repeats
	var fresh []*newTask
	freshAt := map[int]*newTask{}
	var released []int64 // tasks whose key expired: it moves to a new task
	for i, p := range ps {
		if key := p.IdempotencyKey; key != "" {
			if old, ok := existing[key]; ok {
				if p.IdempotencyWindow <= 0 || !old.created.Before(p.Now.Add(-p.IdempotencyWindow)) {
					ids[i] = old.id
					continue
				}
				released = append(released, old.id)
				delete(existing, key)
			}
			if j, ok := first[key]; ok {
				sameAs[i] = j
				continue
			}
			first[key] = i
		}
		nt := &newTask{p: p, now: UTC(p.Now), stepIDs: make(map[string]int64, len(p.Steps))}
		fresh = append(fresh, nt)
		freshAt[i] = nt
	}
	if len(released) > 0 {
		if _, err := tx.Exec(ctx, s.Q("IdempotencyKeysRelease"), s.IDs(released)); err != nil {
			return nil, nil, fmt.Errorf("release expired idempotency keys: %w", err)
		}
	}
	if len(fresh) > 0 {
		if err := s.insertTasks(ctx, tx, fresh); err != nil {
			return nil, nil, err
		}
	}
	for i, nt := range freshAt {
		ids[i], created[i] = nt.id, true
	}
	for i, j := range sameAs {
		ids[i] = ids[j]
	}
	return ids, created, nil
}

// keyedTask is an existing task holding an idempotency key.
type keyedTask struct {
	id      int64
	created time.Time
}

// keyedTasks returns the existing tasks with the idempotency keys of ps,
// by key, in one query.
func (s *Core) keyedTasks(ctx context.Context, tx Querier, ps []*store.TaskCreateParams) (map[string]keyedTask, error) {
	var keys []string
	for _, p := range ps {
		if p.IdempotencyKey != "" {
			keys = append(keys, p.IdempotencyKey)
		}
	}
	if len(keys) == 0 {
		return nil, nil
	}
	rs, err := tx.Query(ctx, s.Q("TasksByIdempotencyKey"), s.Strs(keys))
	if err != nil {
		return nil, fmt.Errorf("look up idempotency keys: %w", err)
	}
	defer rs.Close()
	out := make(map[string]keyedTask, len(keys))
	for rs.Next() {
		var key string
		var id int64
		var created ScanTime
		if err := rs.Scan(&key, &id, &created); err != nil {
			return nil, fmt.Errorf("look up idempotency keys: %w", err)
		}
		out[key] = keyedTask{id: id, created: created.T}
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("look up idempotency keys: %w", err)
	}
	return out, nil
}

// namedTask is a template's named task and its named steps' ids by name.
type namedTask struct {
	id    int64
	steps map[string]int64
}

// namedTasks finds or writes the named task and steps of every template
// among ts (once per template: namespace, name and version) and sets each
// task's.
func (s *Core) namedTasks(ctx context.Context, tx Querier, ts []*newTask) error {
	type key struct{ ns, name, version string }
	byKey := map[key]*namedTask{}
	var order []key
	steps := map[key][]store.StepSpec{}
	for _, t := range ts {
		k := key{t.p.Namespace, t.p.Name, t.p.Version}
		if _, ok := steps[k]; !ok {
			order = append(order, k)
		}
		steps[k] = append(steps[k], t.p.Steps...)
	}
	for _, k := range order {
		var p *store.TaskCreateParams
		for _, t := range ts {
			if (key{t.p.Namespace, t.p.Name, t.p.Version}) == k {
				p = t.p
				break
			}
		}
		nt, err := s.namedTask(ctx, tx, p, steps[k], UTC(p.Now))
		if err != nil {
			return fmt.Errorf("template %s/%s@%s: %w", k.ns, k.name, k.version, err)
		}
		byKey[k] = nt
	}
	for _, t := range ts {
		t.named = byKey[key{t.p.Namespace, t.p.Name, t.p.Version}]
	}
	return nil
}

// namedCache remembers, per template (namespace, name, version,
// description and stored document), the named task and named steps a
// creation found committed and unchanged in the database, so that the
// next creations of that template write their tasks without reading them
// again: two statements of about ten in a round of single creates. Rows of
// these tables are never deleted (tasks reference them), so what was
// committed stays valid; a template that changes is a new key. A
// migration forgets everything.
type namedCache struct {
	mu sync.Mutex
	m  map[namedKey]*cachedNamed
}

type namedKey struct{ ns, name, version, description, template string }

// cachedNamed is a committed named task, its named steps' ids and their
// handler classes by name. It is not changed once cached.
type cachedNamed struct {
	nt      *namedTask
	classes map[string]string
}

func (c *namedCache) get(k namedKey) *cachedNamed {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[k]
}

func (c *namedCache) put(k namedKey, v *cachedNamed) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[namedKey]*cachedNamed{}
	}
	c.m[k] = v
}

func (c *namedCache) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m = nil
}

// namedTask finds or writes p's template's named task and the named steps
// of steps.
func (s *Core) namedTask(ctx context.Context, tx Querier, p *store.TaskCreateParams, steps []store.StepSpec,
	now time.Time) (*namedTask, error) {
	key := namedKey{p.Namespace, p.Name, p.Version, p.Description, string(p.TemplateJSON)}
	if c := s.named.get(key); c != nil && coversSteps(c.classes, steps) {
		return c.nt, nil
	}
	var namedTaskID int64
	// After a template's first task its named task exists unchanged: find
	// it without writing. The upserts of namedTaskUpsert lock the rows they
	// touch until commit, which made concurrent creations of one template wait for each
	// other's commit (a third of creation throughput at 16 creators).
	var same bool
	err := tx.QueryRow(ctx, s.Q("NamedTaskFind"), p.Namespace, p.Name, p.Version, p.Description,
		s.J(p.TemplateJSON)).Scan(&namedTaskID, &same)
	if err != nil && !IsNoRows(err) {
		return nil, fmt.Errorf("read named task: %w", err)
	}
	if err != nil || !same {
		if namedTaskID, err = s.namedTaskUpsert(ctx, tx, p, now); err != nil {
			return nil, err
		}
	}
	// Named steps exist after the template's first task: read them, and
	// upsert only those missing or changed (rewriting a thousand unchanged
	// rows on every creation cost more than the read).
	namedSteps := map[string]int64{}
	known := map[string]string{}
	rs, err := tx.Query(ctx, s.Q("NamedSteps"), namedTaskID)
	if err != nil {
		return nil, fmt.Errorf("read named steps: %w", err)
	}
	for rs.Next() {
		var id int64
		var name, class string
		if err := rs.Scan(&id, &name, &class); err != nil {
			rs.Close()
			return nil, fmt.Errorf("read named steps: %w", err)
		}
		namedSteps[name], known[name] = id, class
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("read named steps: %w", err)
	}
	var upsert []store.StepSpec
	if same && coversSteps(known, steps) {
		// Everything was committed before this transaction and is
		// unchanged: later creations need not read it.
		nt := &namedTask{id: namedTaskID, steps: namedSteps}
		s.named.put(key, &cachedNamed{nt: nt, classes: known})
		return nt, nil
	}
	for _, st := range steps {
		if class, ok := known[st.Name]; !ok || class != st.HandlerClass {
			upsert = append(upsert, st)
			known[st.Name] = st.HandlerClass // once per name, whatever the number of tasks
		}
	}
	err = s.InsertRows(ctx, tx, `INSERT INTO tasker_named_steps (named_task_id, name, handler_class) VALUES`, 3, len(upsert),
		func(i int) []any { return []any{namedTaskID, upsert[i].Name, upsert[i].HandlerClass} },
		` ON CONFLICT (named_task_id, name) DO UPDATE SET handler_class = excluded.handler_class RETURNING named_step_id, name`,
		func(r Rows) error {
			var id int64
			var name string
			if err := r.Scan(&id, &name); err != nil {
				return err
			}
			namedSteps[name] = id
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("upsert named steps: %w", err)
	}
	return &namedTask{id: namedTaskID, steps: namedSteps}, nil
}

// coversSteps reports whether every step of steps has a named step of its
// handler class in classes.
func coversSteps(classes map[string]string, steps []store.StepSpec) bool {
	for _, st := range steps {
		if class, ok := classes[st.Name]; !ok || class != st.HandlerClass {
			return false
		}
	}
	return true
}

// namedTaskUpsert writes a template's namespace and named task (new, or
// changed since its last task) and returns the named task's id.
func (s *Core) namedTaskUpsert(ctx context.Context, tx Querier, p *store.TaskCreateParams, now time.Time) (int64, error) {
	var nsID, namedTaskID int64
	if err := tx.QueryRow(ctx, s.Q("NamespaceUpsert"), p.Namespace, s.T(now)).Scan(&nsID); err != nil {
		return 0, fmt.Errorf("upsert namespace: %w", err)
	}
	if err := tx.QueryRow(ctx, s.Q("NamedTaskUpsert"), nsID, p.Name, p.Version, p.Description, s.J(p.TemplateJSON), s.T(now)).Scan(&namedTaskID); err != nil {
		return 0, fmt.Errorf("upsert named task: %w", err)
	}
	return namedTaskID, nil
}

// stepRef is one step of one new task.
type stepRef struct {
	t    *newTask
	spec *store.StepSpec
}

// taskCols are the columns of a new task's row insertTasks writes (the
// task_id comes from the sequence).
var taskCols = []string{"named_task_id", "namespace", "name", "version", "state", "transition_seq", "context",
	"initiator", "source_system", "reason", "tags", "priority", "idempotency_key", "max_parallel_steps", "created_at",
	"updated_at", "run_at", "retention_seconds", "retention_failed_seconds", "concurrency_key", "concurrency_limit",
	"concurrency_policy", "queue_operation", "queue_run_at", "queue_priority", "queue_attempts", "queue_reason",
	"queue_created_at", "queue_updated_at"}

// insertTasks writes the rows of the new tasks ts: their named tasks, then
// for all of them together the tasks (with their enqueue records, in the
// queue_* columns since migration 0021), their transitions, steps, edges
// and step transitions, each in one statement (chunked, or COPY on
// PostgreSQL for many rows).
func (s *Core) insertTasks(ctx context.Context, tx Tx, ts []*newTask) error {
	for _, t := range ts {
		if err := checkQueueOp(t.p); err != nil {
			return err
		}
	}
	if err := s.namedTasks(ctx, tx, ts); err != nil {
		return err
	}
	taskRow := func(i int) []any {
		p := ts[i].p
		tags := p.Tags
		if tags == nil {
			tags = []string{}
		}
		tagJSON, _ := json.Marshal(tags)
		var idem any
		if p.IdempotencyKey != "" {
			idem = p.IdempotencyKey
		}
		now := s.T(ts[i].now)
		var runAt any
		if p.RunAt != nil {
			runAt = s.T(*p.RunAt)
		}
		var key, limit, policy any
		if c := p.Concurrency; c != nil {
			key, limit, policy = c.Key, c.Limit, c.Policy
		}
		q := s.newQueueRecord(ts[i])
		return []any{ts[i].named.id, p.Namespace, p.Name, p.Version, "pending", 1, s.J(p.Context), p.Initiator,
			p.SourceSystem, p.Reason, s.J(tagJSON), p.Priority, idem, p.MaxParallelSteps, now, now, runAt,
			seconds(p.Retention), seconds(p.RetentionFailed), key, limit, policy,
			q[0], q[1], q[2], q[3], q[4], q[5], q[6]}
	}
	if cp, ok := tx.(Copier); ok && len(ts) >= CopyMinRows {
		// Take the ids from the sequence, then COPY the rows: a
		// multi-row INSERT of 29 parameters a row costs PostgreSQL far
		// more to parse and bind.
		ids, err := cp.NextIDs(ctx, IDsOfTasks, len(ts))
		if err != nil {
			return fmt.Errorf("insert tasks: %w", err)
		}
		cols := append([]string{"task_id"}, taskCols...)
		rows := make([][]any, len(ts))
		for i, t := range ts {
			t.id = ids[i]
			rows[i] = append([]any{ids[i]}, taskRow(i)...)
		}
		if err := cp.CopyRows(ctx, "tasker_tasks", cols, rows); err != nil {
			return fmt.Errorf("insert tasks: %w", err)
		}
	} else {
		// Task ids come from the table's sequence (PostgreSQL) or rowid
		// counter (SQLite), taken in the order of the VALUES rows: sorted,
		// the returned ids are the rows' in order, whatever the order
		// RETURNING gives them in.
		taskIDs := make([]int64, 0, len(ts))
		err := s.InsertRows(ctx, tx, "INSERT INTO tasker_tasks ("+strings.Join(taskCols, ", ")+") VALUES", len(taskCols), len(ts), taskRow,
			` RETURNING task_id`, func(r Rows) error {
				var id int64
				if err := r.Scan(&id); err != nil {
					return err
				}
				taskIDs = append(taskIDs, id)
				return nil
			})
		if err != nil {
			return fmt.Errorf("insert tasks: %w", err)
		}
		if len(taskIDs) != len(ts) {
			return fmt.Errorf("insert tasks: %d ids for %d tasks", len(taskIDs), len(ts))
		}
		slices.Sort(taskIDs)
		for i, t := range ts {
			t.id = taskIDs[i]
		}
	}
	err := s.bulkInsert(ctx, tx, "tasker_task_transitions", []string{"task_id", "from_state", "to_state", "event", "reason",
		"actor", "sort_key", "created_at"}, len(ts), func(i int) []any {
		t := ts[i]
		return []any{t.id, nil, "pending", "initialize", t.p.Reason, t.p.Actor, 1, s.T(t.now)}
	})
	if err != nil {
		return fmt.Errorf("insert task transitions: %w", err)
	}
	var steps []stepRef
	for _, t := range ts {
		for i := range t.p.Steps {
			steps = append(steps, stepRef{t: t, spec: &t.p.Steps[i]})
		}
	}
	if err := s.insertSteps(ctx, tx, steps); err != nil {
		return err
	}
	if err := s.insertEdges(ctx, tx, ts); err != nil {
		return err
	}
	err = s.bulkInsert(ctx, tx, "tasker_workflow_step_transitions", []string{"step_id", "task_id", "from_state", "to_state",
		"event", "reason", "actor", "sort_key", "created_at"}, len(steps),
		func(i int) []any {
			st, t := steps[i].spec, steps[i].t
			to, event, reason := string(taskertype.StepStatePending), "initialize", ""
			if st.Bypassed {
				to, event, reason = string(taskertype.StepStateResolvedManually), "bypass", "bypassed by task request"
			}
			return []any{t.stepIDs[st.Name], t.id, nil, to, event, reason, t.p.Actor, 1, s.T(t.now)}
		})
	if err != nil {
		return fmt.Errorf("insert step transitions: %w", err)
	}
	return nil
}

// insertSteps writes the steps of new tasks and notes their ids in their
// tasks' stepIDs.
func (s *Core) insertSteps(ctx context.Context, tx Tx, steps []stepRef) error {
	stepRow := func(i int) []any {
		st, t := steps[i].spec, steps[i].t
		state := string(taskertype.StepStatePending)
		var completed any
		if st.Bypassed {
			state = string(taskertype.StepStateResolvedManually)
			completed = s.T(t.now)
		}
		inputs := st.Inputs
		if len(inputs) == 0 {
			inputs = json.RawMessage(`{}`)
		}
		return []any{t.id, t.named.steps[st.Name], st.Name, st.HandlerClass, s.J(st.HandlerConfig), state, 1,
			st.Retryable, st.MaxAttempts, st.TimeoutSeconds, st.Skippable, s.J(inputs), s.T(t.now), s.T(t.now), completed}
	}
	var err error
	cp, canCopy := tx.(Copier)
	if canCopy && len(steps) >= CopyMinRows {
		// Take the ids from the sequence, then COPY the rows.
		ids, err := cp.NextIDs(ctx, IDsOfSteps, len(steps))
		if err != nil {
			return err
		}
		rows := make([][]any, len(steps))
		for i, st := range steps {
			st.t.stepIDs[st.spec.Name] = ids[i]
			rows[i] = append([]any{ids[i]}, stepRow(i)...)
		}
		err = cp.CopyRows(ctx, "tasker_workflow_steps", []string{"step_id", "task_id", "named_step_id", "name", "handler_class",
			"handler_config", "state", "transition_seq", "retryable", "max_attempts", "timeout_seconds", "skippable", "inputs",
			"created_at", "updated_at", "completed_at"}, rows)
		if err != nil {
			return fmt.Errorf("insert steps: %w", err)
		}
		return nil
	}
	byID := make(map[int64]*newTask)
	for _, st := range steps {
		byID[st.t.id] = st.t
	}
	err = s.InsertRows(ctx, tx, `INSERT INTO tasker_workflow_steps (task_id, named_step_id, name, handler_class, handler_config,
	state, transition_seq, retryable, max_attempts, timeout_seconds, skippable, inputs, created_at, updated_at, completed_at) VALUES`, 15, len(steps),
		stepRow, ` RETURNING step_id, task_id, name`,
		func(r Rows) error {
			var id, taskID int64
			var name string
			if err := r.Scan(&id, &taskID, &name); err != nil {
				return err
			}
			if t := byID[taskID]; t != nil {
				t.stepIDs[name] = id
			}
			return nil
		})
	if err != nil {
		return fmt.Errorf("insert steps: %w", err)
	}
	return nil
}

// insertEdges writes the step edges of new tasks; a parent that is not a
// step of its task is a taskertype.RequestError.
func (s *Core) insertEdges(ctx context.Context, tx Tx, ts []*newTask) error {
	type edge struct{ task, from, to int64 }
	var edges []edge
	for _, t := range ts {
		for _, st := range t.p.Steps {
			for _, parent := range st.Parents {
				from, ok := t.stepIDs[parent]
				if !ok {
					return &taskertype.RequestError{Step: st.Name, Msg: fmt.Sprintf("depends on unknown step %q", parent)}
				}
				edges = append(edges, edge{task: t.id, from: from, to: t.stepIDs[st.Name]})
			}
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
	err := s.bulkInsert(ctx, tx, "tasker_workflow_step_edges", []string{"task_id", "from_step_id", "to_step_id"}, len(edges),
		func(i int) []any { return []any{edges[i].task, edges[i].from, edges[i].to} })
	if err != nil {
		return fmt.Errorf("insert step edges: %w", err)
	}
	return nil
}

// QueueRecord is the enqueue record a new task's row carries: its
// queue_* columns (migration 0021). Set is false when the task is not
// enqueued (a new task has no record, so a QueueDelete writes nothing).
type QueueRecord struct {
	Set       bool
	Operation string // "enqueue" unless the params say otherwise
	RunAt     time.Time
	Priority  int
	Reason    string
}

// NewQueueRecord is the enqueue record of a new task of p created at now.
func NewQueueRecord(p *store.TaskCreateParams, now time.Time) QueueRecord {
	op := p.Queue
	if op.Kind != store.QueueUpsert {
		return QueueRecord{}
	}
	runAt := op.RunAt
	if runAt.IsZero() {
		runAt = now
	}
	return QueueRecord{Set: true, Operation: cmp.Or(op.Operation, "enqueue"), RunAt: runAt, Priority: op.Priority,
		Reason: op.Reason}
}

// newQueueRecord is t's enqueue record as the INSERT of its row writes it:
// queue_operation, queue_run_at, queue_priority, queue_attempts,
// queue_reason, queue_created_at and queue_updated_at, all NULL without a
// record.
func (s *Core) newQueueRecord(t *newTask) [7]any {
	q := NewQueueRecord(t.p, t.now)
	if !q.Set {
		return [7]any{}
	}
	return [7]any{q.Operation, s.T(q.RunAt), q.Priority, 0, q.Reason, s.T(t.now), s.T(t.now)}
}

// checkQueueOp refuses a new task's queue operation that is none of the
// known kinds.
func checkQueueOp(p *store.TaskCreateParams) error {
	switch p.Queue.Kind {
	case store.QueueNone, store.QueueDelete, store.QueueUpsert:
		return nil
	}
	return fmt.Errorf("enqueue new task %s/%s: unknown queue operation %d", p.Namespace, p.Name, p.Queue.Kind)
}

// seconds is a retention as the tasks table keeps it: whole seconds, or
// NULL (for ever) for nil.
func seconds(d *time.Duration) any {
	if d == nil {
		return nil
	}
	return int64(*d / time.Second)
}
