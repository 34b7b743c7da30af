-- The durable enqueue records (one per unfinished task).

-- name: QueueDelete
DELETE FROM tasker_task_queue WHERE task_id = $1;

-- name: QueueUpsert
-- Writes (or replaces, clearing any lease) task $1's record: $2 operation,
-- $3 run_at, $4 priority, $5 reason, $6 the time.
INSERT INTO tasker_task_queue (task_id, operation, run_at, priority, attempts, reason, created_at, updated_at)
VALUES ($1, $2, $3, $4, 0, $5, $6, $6)
ON CONFLICT (task_id) DO UPDATE SET operation = excluded.operation, run_at = excluded.run_at, priority = excluded.priority,
	reason = excluded.reason, attempts = 0, lease_owner = NULL, lease_expires_at = NULL, updated_at = excluded.updated_at;

-- name: QueueClaim
-- Leases to $1 until $2 up to $4 records due by $5 and not leased at $3.
-- The claimed records are found by primary key from an array: as
-- "task_id IN (subquery)" the planner hash-joined the subquery with a
-- sequential scan of the whole queue.
UPDATE tasker_task_queue SET lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1, updated_at = $3
WHERE task_id = ANY(ARRAY(
	SELECT task_id FROM tasker_task_queue
	WHERE run_at <= $5 AND (lease_expires_at IS NULL OR lease_expires_at < $3)
	ORDER BY priority DESC, run_at LIMIT $4 FOR UPDATE SKIP LOCKED))
RETURNING task_id, operation, run_at, priority, attempts, reason, COALESCE(lease_owner, ''), lease_expires_at, created_at;

-- name: QueueRelease
UPDATE tasker_task_queue SET lease_owner = NULL, lease_expires_at = NULL, run_at = $3, updated_at = $3
WHERE task_id = $1 AND lease_owner = $2;

-- name: QueueAck
DELETE FROM tasker_task_queue WHERE task_id = $1 AND lease_owner = $2;

-- name: QueueExtend
UPDATE tasker_task_queue SET lease_expires_at = $2 WHERE lease_owner = $1 AND task_id = ANY($3::bigint[]);

-- name: QueueList
SELECT task_id, operation, run_at, priority, attempts, reason, COALESCE(lease_owner, ''), lease_expires_at, created_at
FROM tasker_task_queue ORDER BY run_at LIMIT $1;

-- name: QueueNextRunAt
SELECT min(run_at) FROM tasker_task_queue WHERE lease_owner IS NULL;

-- name: QueueStats
-- Due, leased and all records at $1, and the oldest due run_at.
SELECT
	COALESCE(SUM(CASE WHEN run_at <= $1 AND (lease_expires_at IS NULL OR lease_expires_at < $1) THEN 1 ELSE 0 END), 0),
	COALESCE(SUM(CASE WHEN lease_expires_at >= $1 THEN 1 ELSE 0 END), 0),
	COUNT(*),
	MIN(CASE WHEN run_at <= $1 AND (lease_expires_at IS NULL OR lease_expires_at < $1) THEN run_at END)
FROM tasker_task_queue;
