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
SELECT nextval(pg_get_serial_sequence('tasker_workflow_steps', 'step_id')) FROM generate_series(1, $1::integer);

-- name: NextTaskIDs
-- $1 task ids taken from the tasks' sequence in one round trip (for COPY).
SELECT nextval(pg_get_serial_sequence('tasker_tasks', 'task_id')) FROM generate_series(1, $1::integer);
