-- Concurrency keys (internal/store/sqlcore/concurrency.go).

-- name: ConcurrencyOf
-- Task $1's state, concurrency key, limit and policy ('' and 0: none) and
-- priority (kept by a parked task's queue record).
SELECT state, COALESCE(concurrency_key, ''), COALESCE(concurrency_limit, 0), COALESCE(concurrency_policy, ''), priority
FROM tasker_tasks WHERE task_id = $1;

-- name: ConcurrencyLock
-- Nothing to take: the write transaction (BEGIN IMMEDIATE) already keeps
-- every other writer out until it ends. $1 is the key.
SELECT $1;

-- name: ConcurrencyRunning
-- The running tasks of key $1, oldest first.
SELECT task_id FROM tasker_tasks
WHERE concurrency_key = $1 AND completed_at IS NULL AND state IN ('in_progress', 'waiting_for_retry')
ORDER BY task_id;

-- name: ConcurrencyTaskSteps
-- The steps of task $1 (a policy cancels the unfinished ones).
SELECT step_id FROM tasker_workflow_steps WHERE task_id = $1 ORDER BY step_id;

-- name: ConcurrencyLockMany
-- Admission in a batch (Tx.ConcurrencyLockMany): of tasks $1 (a JSON
-- array), the pending ones with a key (running false), then the running
-- tasks of those keys, oldest first (running true). The write transaction
-- is the lock, so one statement reads both (PostgreSQL needs two, see
-- sqlcore.ConcurrencyLockMany). The unary + keeps SQLite's planner on the
-- keys' partial index (without statistics it took tasker_tasks_state and
-- read every running task).
WITH pending AS MATERIALIZED (
    SELECT task_id, concurrency_key, concurrency_limit, COALESCE(concurrency_policy, '') AS policy FROM tasker_tasks
    WHERE task_id IN (SELECT value FROM json_each($1)) AND +state = 'pending' AND concurrency_key IS NOT NULL)
SELECT task_id, concurrency_key, concurrency_limit, policy, 0 AS running FROM pending
UNION ALL
SELECT task_id, concurrency_key, 0, '', 1 FROM tasker_tasks
WHERE concurrency_key IN (SELECT concurrency_key FROM pending) AND completed_at IS NULL
    AND +state IN ('in_progress', 'waiting_for_retry')
ORDER BY running, task_id;
