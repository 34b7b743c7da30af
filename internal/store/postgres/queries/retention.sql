-- Retention (issue 19 item 8): pruning finished tasks. Deleting a task
-- deletes everything keyed by it: its steps, edges and task transitions
-- (0009's statement trigger on tasks), its steps' transitions (0006's
-- trigger on steps) and its enqueue record (foreign key cascade).

-- name: TaskPruneLock
-- One pruner at a time among every process on the database (and schema):
-- a transaction-level advisory lock, which works through PgBouncer's
-- transaction pooling, taken without waiting. False: another pruner is
-- deleting a batch right now.
SELECT pg_try_advisory_xact_lock(hashtext('tasker.prune:' || current_schema()));

-- name: TaskPruneDue
-- Deletes up to $2 tasks whose keep_until is at or before $1, the oldest
-- due first (an index range scan of tasker_tasks_keep_until). A task an
-- operator is moving (a retry clears keep_until) is skipped, not waited for.
DELETE FROM tasker_tasks WHERE task_id = ANY(ARRAY(
	SELECT task_id FROM tasker_tasks WHERE keep_until <= $1 ORDER BY keep_until LIMIT $2 FOR UPDATE SKIP LOCKED));

-- name: TaskPruneFinished
-- `tasker prune --older-than`: deletes up to $2 finished tasks whose
-- completion is before $1, whatever their retention (kept for ever
-- included), the oldest first (through tasker_tasks_completed).
DELETE FROM tasker_tasks WHERE task_id = ANY(ARRAY(
	SELECT task_id FROM tasker_tasks WHERE completed_at < $1 ORDER BY completed_at LIMIT $2 FOR UPDATE SKIP LOCKED));

-- name: TaskPruneCountDue
SELECT count(*) FROM tasker_tasks WHERE keep_until <= $1;

-- name: TaskPruneCountFinished
SELECT count(*) FROM tasker_tasks WHERE completed_at < $1;
