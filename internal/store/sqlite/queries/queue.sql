-- The durable enqueue records (one per unfinished task), kept in the
-- queue_* columns of the task's row since migration 0021: queue_run_at is
-- NULL when the task has none.

-- name: QueueDelete
UPDATE tasker_tasks SET {{template "queue_clear"}} WHERE task_id = $1 AND queue_run_at IS NOT NULL;

-- name: QueueUpsert
-- Writes (or replaces, clearing any lease) task $1's record: $2 operation,
-- $3 run_at, $4 priority, $5 reason, $6 the time.
UPDATE tasker_tasks SET queue_operation = $2, queue_run_at = $3, queue_priority = $4, queue_reason = $5, queue_attempts = 0,
	queue_lease_owner = NULL, queue_lease_expires_at = NULL, queue_created_at = CASE WHEN queue_run_at IS NULL THEN $6
		ELSE queue_created_at END, queue_updated_at = $6
WHERE task_id = $1;

-- name: QueueClaim
-- Leases to $1 until $2 up to $4 records due by $5 and not leased at $3
-- (the transaction's write lock keeps other claimers out). The claim index
-- is named: without statistics SQLite took the due index for the range on
-- queue_run_at and sorted every due task for each claim (single-step
-- burn-down 0.7x).
UPDATE tasker_tasks SET queue_lease_owner = $1, queue_lease_expires_at = $2, queue_attempts = queue_attempts + 1,
	queue_updated_at = $3
WHERE task_id IN (
	SELECT task_id FROM tasker_tasks INDEXED BY tasker_tasks_queue_claim
	WHERE queue_run_at IS NOT NULL AND queue_run_at <= $5
		AND (queue_lease_expires_at IS NULL OR queue_lease_expires_at < $3)
	ORDER BY queue_priority DESC, queue_run_at LIMIT $4)
RETURNING {{template "queue_cols"}};

-- name: QueueRelease
UPDATE tasker_tasks SET queue_lease_owner = NULL, queue_lease_expires_at = NULL, queue_run_at = $3, queue_updated_at = $3
WHERE task_id = $1 AND queue_lease_owner = $2;

-- name: QueueAck
UPDATE tasker_tasks SET {{template "queue_clear"}} WHERE task_id = $1 AND queue_lease_owner = $2;

-- name: QueueExtend
UPDATE tasker_tasks SET queue_lease_expires_at = $2
WHERE queue_lease_owner = $1 AND task_id IN (SELECT value FROM json_each($3));

-- name: QueueList
SELECT {{template "queue_cols"}} FROM tasker_tasks WHERE queue_run_at IS NOT NULL ORDER BY queue_run_at LIMIT $1;

-- name: QueueNextRunAt
-- The earliest run_at after $1 of an unleased record (store.Store.QueueNextRunAt).
SELECT min(queue_run_at) FROM tasker_tasks WHERE queue_run_at > $1 AND queue_lease_owner IS NULL;

-- name: QueueStats
-- Due, leased and all records at $1, and the oldest due run_at.
SELECT
	COALESCE(SUM(CASE WHEN queue_run_at <= $1 AND (queue_lease_expires_at IS NULL OR queue_lease_expires_at < $1) THEN 1 ELSE 0 END), 0),
	COALESCE(SUM(CASE WHEN queue_lease_expires_at >= $1 THEN 1 ELSE 0 END), 0),
	COUNT(*),
	MIN(CASE WHEN queue_run_at <= $1 AND (queue_lease_expires_at IS NULL OR queue_lease_expires_at < $1) THEN queue_run_at END)
FROM tasker_tasks WHERE queue_run_at IS NOT NULL;
