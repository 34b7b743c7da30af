-- Tasks: reading, creating (the fixed statements; the multi-row INSERTs
-- are built per call in internal/store/sqlcore/taskcreate.go) and moving.
-- Lists arrive as one JSON array parameter, read with json_each.

-- name: TaskGet
SELECT {{template "task_cols"}} FROM tasker_tasks t WHERE t.task_id = $1;

-- name: TaskListFrom
-- The head of the task listing: sqlcore.TaskList adds the filters, order and limit.
SELECT {{template "task_cols"}} FROM tasker_tasks t;

-- name: TasksByID
SELECT {{template "task_cols"}} FROM tasker_tasks t WHERE t.task_id IN (SELECT value FROM json_each($1));

-- name: TaskState
SELECT state FROM tasker_tasks WHERE task_id = $1;

-- name: TasksByIdempotencyKey
SELECT idempotency_key, task_id, created_at FROM tasker_tasks WHERE idempotency_key IN (SELECT value FROM json_each($1));

-- name: IdempotencyKeysRelease
-- The keys of tasks older than their deduplication window move to new
-- tasks: the old tasks no longer carry them.
UPDATE tasker_tasks SET idempotency_key = NULL WHERE task_id IN (SELECT value FROM json_each($1));

-- name: NamedTaskFind
-- $1 namespace, $2 name, $3 version, $4 description, $5 template: the
-- named task and whether it is unchanged.
SELECT nt.named_task_id, COALESCE(nt.description = $4 AND nt.template IS NOT DISTINCT FROM $5, false)
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

-- name: TaskMove
-- The guarded state change of task $1 to $2 from one of the states $3 at
-- $4 ($5: $2 is terminal); its transition row is TaskTransitionInsert.
UPDATE tasker_tasks SET state = $2, previous_state = state, transition_seq = transition_seq + 1,
	updated_at = $4, completed_at = CASE WHEN $5 THEN $4 ELSE NULL END,
	-- keep_until (retention, 0014): $4 plus the retention of the state
	-- reached, in whole seconds, keeping $4's fraction and format.
	keep_until = CASE WHEN $5 THEN strftime('%Y-%m-%dT%H:%M:%S', $4, '+' || CASE WHEN $2 = 'error'
		THEN retention_failed_seconds ELSE retention_seconds END || ' seconds') || substr($4, 20) END
WHERE task_id = $1 AND state IN (SELECT value FROM json_each($3))
RETURNING previous_state, transition_seq;

-- name: TaskMoveDequeue
-- TaskMove that also removes the task's enqueue record (in its row since
-- migration 0021). A separate statement: SQLite rewrites the entries of
-- every index on a column an UPDATE assigns, changed or not, so TaskMove
-- must not name the queue columns.
UPDATE tasker_tasks SET state = $2, previous_state = state, transition_seq = transition_seq + 1,
	updated_at = $4, completed_at = CASE WHEN $5 THEN $4 ELSE NULL END,
	queue_operation = NULL, queue_run_at = NULL, queue_priority = NULL, queue_attempts = NULL, queue_reason = NULL,
	queue_lease_owner = NULL, queue_lease_expires_at = NULL, queue_created_at = NULL, queue_updated_at = NULL,
	-- keep_until (retention, 0014): $4 plus the retention of the state
	-- reached, in whole seconds, keeping $4's fraction and format.
	keep_until = CASE WHEN $5 THEN strftime('%Y-%m-%dT%H:%M:%S', $4, '+' || CASE WHEN $2 = 'error'
		THEN retention_failed_seconds ELSE retention_seconds END || ' seconds') || substr($4, 20) END
WHERE task_id = $1 AND state IN (SELECT value FROM json_each($3))
RETURNING previous_state, transition_seq;

-- name: TaskTransitionInsert
INSERT INTO tasker_task_transitions (task_id, from_state, to_state, event, reason, actor, metadata, sort_key, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9);

-- name: TaskTransitions
SELECT tr.id, tr.task_id, 0, '', COALESCE(tr.from_state, ''), tr.to_state, tr.event, tr.reason, tr.actor,
	tr.metadata, tr.sort_key, tr.sort_key = t.transition_seq, tr.created_at
FROM tasker_task_transitions tr JOIN tasker_tasks t ON t.task_id = tr.task_id WHERE tr.task_id = $1 ORDER BY tr.sort_key;

-- name: TaskSummary
SELECT {{template "summary_cols" "$2"}}
FROM tasker_workflow_steps s WHERE s.task_id = $1;
