-- Concurrency keys (internal/store/sqlcore/concurrency.go).

-- name: ConcurrencyOf
-- Task $1's state, concurrency key, limit and policy ('' and 0: none) and
-- priority (kept by a parked task's queue record).
SELECT state, COALESCE(concurrency_key, ''), COALESCE(concurrency_limit, 0), COALESCE(concurrency_policy, ''), priority
FROM tasker_tasks WHERE task_id = $1;

-- name: ConcurrencyLock
-- Serializes the admissions of key $1 until the transaction ends (a
-- collision of two keys' hashes only serializes both).
SELECT pg_advisory_xact_lock(1952805748, hashtext($1::text));

-- name: ConcurrencyRunning
-- The running tasks of key $1, oldest first, locked FOR SHARE: a finish in
-- flight (its row locked for update) is waited for and then not counted,
-- and a finish that comes later waits for this transaction, so its wake
-- sees what this one parked.
SELECT task_id FROM tasker_tasks
WHERE concurrency_key = $1 AND completed_at IS NULL AND state IN ('in_progress', 'waiting_for_retry')
ORDER BY task_id FOR SHARE;

-- name: ConcurrencyTaskSteps
-- The steps of task $1 (a policy cancels the unfinished ones).
SELECT step_id FROM tasker_workflow_steps WHERE task_id = $1 ORDER BY step_id;
