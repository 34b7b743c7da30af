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

-- name: ConcurrencyLockMany
-- Admission in a batch (Tx.ConcurrencyLockMany): of tasks $1, the pending
-- ones with a key, once the lock of each key is taken (as ConcurrencyLock
-- does), in hash order so that two batches never wait for each other's
-- keys in a cycle. The locks are taken in a CTE evaluated in full before a
-- row is returned; the states are those of this statement's snapshot,
-- taken before the locks (the counting statement comes after).
WITH keyed AS MATERIALIZED (
    SELECT task_id, concurrency_key, concurrency_limit, COALESCE(concurrency_policy, '') AS policy,
        hashtext(concurrency_key) AS h
    FROM tasker_tasks
    WHERE task_id = ANY($1::bigint[]) AND state = 'pending' AND concurrency_key IS NOT NULL
), locked AS MATERIALIZED (
    SELECT pg_advisory_xact_lock(1952805748, h)::text AS l FROM (SELECT DISTINCT h FROM keyed ORDER BY h) d
)
SELECT task_id, concurrency_key, concurrency_limit, policy, false FROM keyed
WHERE (SELECT count(*) FROM locked) >= 0;

-- name: ConcurrencyRunningMany
-- The running tasks of keys $1, oldest first, locked FOR SHARE (see
-- ConcurrencyRunning); PostgreSQL's own (sqlcore.ConcurrencyLockMany runs
-- it when a database defines it). One key at a time: given the keys as
-- "concurrency_key = ANY($1)", the planner read every unfinished task
-- through tasker_tasks_unfinished (without statistics, and with them when
-- few tasks are unfinished at the last ANALYZE); an equality per key uses
-- tasker_tasks_concurrency.
SELECT r.task_id, k.k FROM unnest($1::text[]) AS k (k)
CROSS JOIN LATERAL (
	SELECT r.task_id FROM tasker_tasks r
	WHERE r.concurrency_key = k.k AND r.completed_at IS NULL AND r.state IN ('in_progress', 'waiting_for_retry')
	FOR SHARE) r
ORDER BY r.task_id;

-- name: ConcurrencyStart
-- Admits and starts the pending tasks with a key of $1 (leased by a queue
-- claim): tasker_concurrency_start of migration 0024, actor $2, time $3
-- (NULL: the database's clock), reason $4. It returns the tasks it
-- started, their transition_seq and updated_at.
SELECT started_id, started_seq, started_at FROM tasker_concurrency_start($1::bigint[], $2, $3, $4);
