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
-- Leases to $1 until $2 up to $4 records due by $5 and not leased at $3.
-- The claimed records are found by primary key from an array: as
-- "task_id IN (subquery)" the planner hash-joined the subquery with a
-- sequential scan of the whole queue. The rows are locked FOR NO KEY
-- UPDATE (what the update takes): FOR UPDATE would also skip tasks whose
-- rows another transaction holds a key-share lock on (a foreign key check
-- of a row inserted for the task).
UPDATE tasker_tasks SET queue_lease_owner = $1, queue_lease_expires_at = $2, queue_attempts = queue_attempts + 1,
	queue_updated_at = $3
WHERE task_id = ANY(ARRAY(
	SELECT task_id FROM tasker_tasks
	WHERE queue_run_at <= $5 AND (queue_lease_expires_at IS NULL OR queue_lease_expires_at < $3)
	ORDER BY queue_priority DESC, queue_run_at LIMIT $4 FOR NO KEY UPDATE SKIP LOCKED))
RETURNING {{template "queue_cols"}};

-- name: QueueRelease
UPDATE tasker_tasks SET queue_lease_owner = NULL, queue_lease_expires_at = NULL, queue_run_at = $3, queue_updated_at = $3
WHERE task_id = $1 AND queue_lease_owner = $2;

-- name: QueueAck
UPDATE tasker_tasks SET {{template "queue_clear"}} WHERE task_id = $1 AND queue_lease_owner = $2;

-- name: QueueExtend
UPDATE tasker_tasks SET queue_lease_expires_at = $2 WHERE queue_lease_owner = $1 AND task_id = ANY($3::bigint[]);

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

-- name: QueueClaimStart
-- QueueClaim ($1-$5) that also starts the claimed tasks a coordinator
-- could start without admission (waiting_for_retry, or pending without a
-- concurrency key) and appends their start transitions ($6 the reason,
-- the owner the actor): with the record in the task's row the claim is the
-- start, one write of the row instead of two. It returns each claimed
-- task (task_cols, after the start), the state a started task left and its
-- transition_seq, its record (queue_cols without the task id), whether the
-- claim started it and whether it waits for admission (pending with a
-- key: QueueClaim then calls tasker_concurrency_start, migration 0024).
WITH picked AS (
	SELECT t.task_id AS id,
		t.state = 'waiting_for_retry' OR (t.state = 'pending' AND t.concurrency_key IS NULL) AS start,
		t.state = 'pending' AND t.concurrency_key IS NOT NULL AS admit
	FROM tasker_tasks t
	WHERE t.queue_run_at <= $5 AND (t.queue_lease_expires_at IS NULL OR t.queue_lease_expires_at < $3)
	ORDER BY t.queue_priority DESC, t.queue_run_at LIMIT $4 FOR NO KEY UPDATE SKIP LOCKED),
claimed AS (
	UPDATE tasker_tasks t SET queue_lease_owner = $1, queue_lease_expires_at = $2, queue_attempts = t.queue_attempts + 1,
		queue_updated_at = $3, state = CASE WHEN p.start THEN 'in_progress' ELSE t.state END,
		previous_state = CASE WHEN p.start THEN t.state ELSE t.previous_state END,
		transition_seq = CASE WHEN p.start THEN t.transition_seq + 1 ELSE t.transition_seq END,
		updated_at = CASE WHEN p.start THEN $3 ELSE t.updated_at END
	FROM picked p
	WHERE t.task_id = ANY(ARRAY(SELECT id FROM picked)) AND t.task_id = p.id
	RETURNING {{template "task_cols"}}, COALESCE(t.previous_state, '') AS from_state, t.transition_seq,
		t.queue_operation, t.queue_run_at, t.queue_priority, t.queue_attempts, t.queue_reason,
		COALESCE(t.queue_lease_owner, '') AS lease_owner, t.queue_lease_expires_at, t.queue_created_at, p.start, p.admit),
tr AS (
	INSERT INTO tasker_task_transitions (task_id, from_state, to_state, event, reason, actor, metadata, sort_key, created_at)
	SELECT task_id, from_state, 'in_progress', 'start', $6, $1, NULL, transition_seq, $3
	FROM claimed WHERE start ORDER BY task_id)
SELECT * FROM claimed;
