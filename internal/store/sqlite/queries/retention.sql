-- Retention (issue 19 item 8): pruning finished tasks. Deleting a task
-- deletes everything keyed by it through the foreign keys' cascades: its
-- steps (and their transitions), edges, task transitions and enqueue record.

-- name: TaskPruneLock
-- One pruner at a time: the transaction began IMMEDIATE and holds the
-- database's write lock, which keeps every other process's pruner (and
-- writer) out until it commits.
SELECT 1;

-- name: TaskPruneDue
-- Deletes up to $2 tasks whose keep_until is at or before $1, the oldest
-- due first (through tasker_tasks_keep_until).
DELETE FROM tasker_tasks WHERE task_id IN (
	SELECT task_id FROM tasker_tasks WHERE keep_until <= $1 ORDER BY keep_until LIMIT $2);

-- name: TaskPruneFinished
-- `tasker prune --older-than`: deletes up to $2 finished tasks whose
-- completion is before $1, whatever their retention, the oldest first.
DELETE FROM tasker_tasks WHERE task_id IN (
	SELECT task_id FROM tasker_tasks WHERE completed_at < $1 ORDER BY completed_at LIMIT $2);

-- name: TaskPruneCountDue
SELECT count(*) FROM tasker_tasks WHERE keep_until <= $1;

-- name: TaskPruneCountFinished
SELECT count(*) FROM tasker_tasks WHERE completed_at < $1;
