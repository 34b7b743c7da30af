-- Tasks: reading, creating (the fixed statements; the multi-row INSERTs
-- are built per call in internal/store/sqlcore/taskcreate.go) and moving.

-- name: TaskGet
SELECT {{template "task_cols"}} FROM tasker_tasks t WHERE t.task_id = $1;

-- name: TaskListFrom
-- The head of the task listing: sqlcore.TaskList adds the filters, order and limit.
SELECT {{template "task_cols"}} FROM tasker_tasks t;

-- name: TasksByID
SELECT {{template "task_cols"}} FROM tasker_tasks t WHERE t.task_id = ANY($1::bigint[]);

-- name: TaskState
SELECT state FROM tasker_tasks WHERE task_id = $1;

-- name: TasksByIdempotencyKey
SELECT idempotency_key, task_id, created_at FROM tasker_tasks WHERE idempotency_key = ANY($1::text[]);

-- name: IdempotencyKeysRelease
-- The keys of tasks older than their deduplication window move to new
-- tasks: the old tasks no longer carry them.
UPDATE tasker_tasks SET idempotency_key = NULL WHERE task_id = ANY($1::bigint[]);

-- name: NamedTaskFind
-- $1 namespace, $2 name, $3 version, $4 description, $5 template: the
-- named task and whether it is unchanged.
SELECT nt.named_task_id, COALESCE(nt.description = $4 AND nt.template IS NOT DISTINCT FROM $5::jsonb, false)
FROM tasker_named_tasks nt JOIN tasker_namespaces ns ON ns.namespace_id = nt.namespace_id
WHERE ns.name = $1 AND nt.name = $2 AND nt.version = $3;

-- name: NamespaceUpsert
INSERT INTO tasker_namespaces (name, created_at) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET name = excluded.name RETURNING namespace_id;

-- name: NamedTaskUpsert
INSERT INTO tasker_named_tasks (namespace_id, name, version, description, template, created_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (namespace_id, name, version) DO UPDATE SET description = excluded.description, template = excluded.template
RETURNING named_task_id;

-- name: NamedSteps
SELECT named_step_id, name, handler_class FROM tasker_named_steps WHERE named_task_id = $1;

-- name: TaskTransitions
SELECT tr.id, tr.task_id, 0, '', COALESCE(tr.from_state, ''), tr.to_state, tr.event, tr.reason, tr.actor,
	tr.metadata, tr.sort_key, tr.sort_key = t.transition_seq, tr.created_at
FROM tasker_task_transitions tr JOIN tasker_tasks t ON t.task_id = tr.task_id WHERE tr.task_id = $1 ORDER BY tr.sort_key;

-- name: TaskSummary
SELECT {{template "summary_cols" "$2"}}
FROM tasker_workflow_steps s WHERE s.task_id = $1;

-- name: NextStepIDs
-- $1 step ids taken from the steps' sequence in one round trip (for COPY).
-- The sequence is looked up once, in a MATERIALIZED CTE: inlined, the
-- lookup ran per id (1,000 ids: 7.5 ms instead of 0.9).
WITH seq AS MATERIALIZED (SELECT pg_get_serial_sequence('tasker_workflow_steps', 'step_id')::regclass AS id)
SELECT nextval(seq.id) FROM seq, generate_series(1, $1::integer);

-- name: NextTaskIDs
-- $1 task ids taken from the tasks' sequence in one round trip (for COPY),
-- the sequence looked up once.
WITH seq AS MATERIALIZED (SELECT pg_get_serial_sequence('tasker_tasks', 'task_id')::regclass AS id)
SELECT nextval(seq.id) FROM seq, generate_series(1, $1::integer);

-- name: TaskCreateRound
-- A round of new tasks, their idempotency keys ($37) new (create.go;
-- a key taken meanwhile fails the statement on the unique index): their rows
-- with their enqueue records, their transitions, steps, edges and step
-- transitions, in one statement. The tasks are parallel arrays $1-$23
-- (roundColumns), the steps $24-$34 ($24: their task's position, from 1),
-- the edges $35-$36 (positions in the steps, from 1). Ids come from the
-- sequences (looked up once, in seq: per row, the lookup was a third of the
-- arrays' scan) in position order (a MATERIALIZED scan of the arrays), so
-- the tasks and steps of a round are numbered as the transaction path numbers
-- them, and edges go in as written. It returns the tasks (task_cols), each
-- with its position.
WITH seq AS MATERIALIZED (
	SELECT pg_get_serial_sequence('tasker_tasks', 'task_id')::regclass AS tasks,
		pg_get_serial_sequence('tasker_workflow_steps', 'step_id')::regclass AS steps),
tin AS MATERIALIZED (
	SELECT nextval(seq.tasks) AS task_id, u.*
	FROM seq, unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::text[], $7::text[], $8::text[],
		$9::jsonb[], $10::integer[], $11::integer[], $12::timestamptz[], $13::timestamptz[], $14::bigint[], $15::bigint[],
		$16::text[], $17::integer[], $18::text[], $19::text[], $20::timestamptz[], $21::integer[], $22::text[],
		$23::text[], $37::text[])
		WITH ORDINALITY AS u(named_task_id, namespace, name, version, context, initiator, source_system, reason, tags,
		priority, max_parallel_steps, now, run_at, retention_seconds, retention_failed_seconds, concurrency_key,
		concurrency_limit, concurrency_policy, queue_operation, queue_run_at, queue_priority, queue_reason, actor,
		idempotency_key, ord)),
t AS (
	INSERT INTO tasker_tasks AS t (task_id, named_task_id, namespace, name, version, state, transition_seq, context,
		initiator, source_system, reason, tags, priority, idempotency_key, max_parallel_steps, created_at, updated_at, run_at,
		retention_seconds, retention_failed_seconds, concurrency_key, concurrency_limit, concurrency_policy,
		queue_operation, queue_run_at, queue_priority, queue_attempts, queue_reason, queue_created_at, queue_updated_at)
	SELECT task_id, named_task_id, namespace, name, version, 'pending', 1, context, initiator, source_system, reason,
		tags, priority, idempotency_key, max_parallel_steps, now, now, run_at, retention_seconds, retention_failed_seconds,
		concurrency_key, concurrency_limit, concurrency_policy, queue_operation, queue_run_at, queue_priority,
		CASE WHEN queue_operation IS NOT NULL THEN 0 END, queue_reason,
		CASE WHEN queue_operation IS NOT NULL THEN now END, CASE WHEN queue_operation IS NOT NULL THEN now END
	FROM tin ORDER BY ord
	RETURNING {{template "task_cols"}}),
tt AS (
	INSERT INTO tasker_task_transitions (task_id, from_state, to_state, event, reason, actor, sort_key, created_at)
	SELECT task_id, NULL, 'pending', 'initialize', reason, actor, 1, now FROM tin ORDER BY ord),
sin AS MATERIALIZED (
	SELECT nextval(seq.steps) AS step_id, u.*
	FROM seq, unnest($24::integer[], $25::bigint[], $26::text[], $27::text[], $28::jsonb[], $29::boolean[], $30::boolean[],
		$31::integer[], $32::integer[], $33::boolean[], $34::jsonb[])
		WITH ORDINALITY AS u(task_ord, named_step_id, name, handler_class, handler_config, bypassed, retryable,
		max_attempts, timeout_seconds, skippable, inputs, ord)),
s AS (
	INSERT INTO tasker_workflow_steps (step_id, task_id, named_step_id, name, handler_class, handler_config, state,
		transition_seq, retryable, max_attempts, timeout_seconds, skippable, inputs, created_at, updated_at, completed_at)
	SELECT sin.step_id, tin.task_id, sin.named_step_id, sin.name, sin.handler_class, sin.handler_config,
		CASE WHEN sin.bypassed THEN 'resolved_manually' ELSE 'pending' END, 1, sin.retryable, sin.max_attempts,
		sin.timeout_seconds, sin.skippable, sin.inputs, tin.now, tin.now, CASE WHEN sin.bypassed THEN tin.now END
	FROM sin JOIN tin ON tin.ord = sin.task_ord ORDER BY sin.ord),
st AS (
	INSERT INTO tasker_workflow_step_transitions (step_id, task_id, from_state, to_state, event, reason, actor, sort_key,
		created_at)
	SELECT sin.step_id, tin.task_id, NULL, CASE WHEN sin.bypassed THEN 'resolved_manually' ELSE 'pending' END,
		CASE WHEN sin.bypassed THEN 'bypass' ELSE 'initialize' END,
		CASE WHEN sin.bypassed THEN 'bypassed by task request' ELSE '' END, tin.actor, 1, tin.now
	FROM sin JOIN tin ON tin.ord = sin.task_ord ORDER BY sin.ord),
e AS (
	INSERT INTO tasker_workflow_step_edges (task_id, from_step_id, to_step_id)
	SELECT c.task_id, f.step_id, c.step_id
	FROM unnest($35::integer[], $36::integer[]) WITH ORDINALITY AS x(from_ord, to_ord, ord)
	JOIN sin f ON f.ord = x.from_ord
	JOIN (SELECT sin.ord, sin.step_id, tin.task_id FROM sin JOIN tin ON tin.ord = sin.task_ord) c ON c.ord = x.to_ord
	ORDER BY x.ord)
SELECT t.*, tin.ord FROM t JOIN tin ON tin.task_id = t.task_id;
