-- Steps: reading, claiming, recording outcomes, the operator's and
-- rescuer's moves, leases. Times are fixed-width UTC text (text order is
-- time order); lists arrive as one JSON array parameter.

-- name: StepList
SELECT {{template "step_cols"}} FROM tasker_workflow_steps s WHERE s.task_id = $1 ORDER BY s.step_id;

-- name: StepsByID
SELECT {{template "step_cols"}} FROM tasker_workflow_steps s WHERE s.task_id = $1
	AND s.step_id IN (SELECT value FROM json_each($2))
ORDER BY s.step_id;

-- name: StepParents
SELECT e.to_step_id, p.name, p.state FROM tasker_workflow_step_edges e
JOIN tasker_workflow_steps p ON p.step_id = e.from_step_id WHERE e.task_id = $1 ORDER BY e.to_step_id, p.step_id;

-- name: StepReadiness
SELECT s.step_id, s.name, s.state, s.attempts, s.max_attempts, s.retryable,
	s.next_retry_at, COALESCE(s.lease_owner, ''), s.lease_expires_at,
	(SELECT count(*) FROM tasker_workflow_step_edges e WHERE e.to_step_id = s.step_id),
	(SELECT count(*) FROM tasker_workflow_step_edges e JOIN tasker_workflow_steps p ON p.step_id = e.from_step_id
		WHERE e.to_step_id = s.step_id AND p.state IN ('complete', 'resolved_manually', 'skipped')),
	CASE WHEN s.attempts < s.max_attempts AND (s.attempts = 0 OR s.retryable) THEN 1 ELSE 0 END,
	CASE WHEN s.next_retry_at IS NULL OR s.next_retry_at <= $2 THEN 1 ELSE 0 END,
	CASE WHEN {{template "ready" "$2"}} THEN 1 ELSE 0 END
FROM tasker_workflow_steps s WHERE s.task_id = $1 ORDER BY s.step_id;

-- name: StepClaim
-- Claims for $3 until $4 up to $5 steps of task $1 ready at $2 (with $6,
-- a JSON array, only steps of those names), counting an attempt each.
UPDATE tasker_workflow_steps SET state = 'in_progress', previous_state = state,
	transition_seq = transition_seq + 1, attempts = attempts + 1, last_attempted_at = $2,
	lease_owner = $3, lease_expires_at = $4, next_retry_at = NULL, updated_at = $2
WHERE step_id IN (
	SELECT s.step_id FROM tasker_workflow_steps s
	WHERE s.task_id = $1 AND ($6 IS NULL OR s.name IN (SELECT value FROM json_each($6))) AND {{template "ready" "$2"}}
	ORDER BY s.step_id LIMIT $5)
RETURNING step_id, task_id, name, handler_class, handler_config, state, retryable,
	attempts, max_attempts, timeout_seconds, skippable, inputs, results, error,
	backoff_request_seconds, last_attempted_at, next_retry_at, COALESCE(lease_owner, ''),
	lease_expires_at, created_at, updated_at, completed_at, previous_state, transition_seq,
	EXISTS (SELECT 1 FROM tasker_workflow_step_edges e WHERE e.to_step_id = tasker_workflow_steps.step_id);

-- name: DependencyResults
-- The claimed steps' ($1) edges (rows with a child id), then each distinct
-- parent's name and results once (rows with child 0).
WITH e AS MATERIALIZED (
	SELECT e.to_step_id, e.from_step_id FROM tasker_workflow_step_edges e WHERE e.to_step_id IN (SELECT value FROM json_each($1)))
SELECT e.to_step_id, e.from_step_id, '', NULL FROM e
UNION ALL
SELECT 0, p.step_id, p.name, p.results FROM tasker_workflow_steps p
WHERE p.step_id IN (SELECT DISTINCT from_step_id FROM e);

-- name: RecordSteps
-- Applies a batch of outcomes ($1, a JSON array) to steps still in
-- progress under owner $3's lease in the outcome's attempt (0: any), and a
-- late success to a step the rescuer failed for that same attempt that no
-- later attempt has claimed (see store.StepOutcome.Attempt), at $2. Steps
-- no longer held are left alone (rescued, resolved or cancelled meanwhile)
-- and not returned.
WITH o AS MATERIALIZED (
	SELECT value ->> '$.step_id' AS step_id, value ->> '$.state' AS state, value -> '$.results' AS results,
		value -> '$.error' AS error, value ->> '$.next_retry_at' AS next_retry_at, value ->> '$.backoff' AS backoff,
		value ->> '$.give_back' AS give_back, value ->> '$.completed_at' AS completed_at, value ->> '$.attempt' AS attempt,
		value ->> '$.late_ok' AS late_ok FROM json_each($1))
UPDATE tasker_workflow_steps AS s SET state = o.state, previous_state = s.state, transition_seq = s.transition_seq + 1,
	results = COALESCE(o.results, s.results), error = o.error, next_retry_at = o.next_retry_at,
	backoff_request_seconds = o.backoff, attempts = s.attempts - o.give_back, lease_owner = NULL, lease_expires_at = NULL,
	updated_at = $2, completed_at = o.completed_at
FROM o
WHERE s.step_id = o.step_id AND (o.attempt = 0 OR s.attempts = o.attempt)
	AND ((s.state = 'in_progress' AND s.lease_owner = $3)
		OR (o.late_ok = 1 AND s.state = 'waiting_for_retry' AND s.error ->> '$.kind' = 'lease_expired'))
RETURNING step_id, previous_state, transition_seq, attempts;

-- name: StepsMove
-- Steps $2 of task $1 in one of states $4 move to $3; $5 resets their
-- attempts, $6 is their error, $7 their next retry, $8 the time. With $9
-- set only steps whose lease ended before it move.
UPDATE tasker_workflow_steps SET state = $3, previous_state = state, transition_seq = transition_seq + 1,
	attempts = CASE WHEN $5 THEN 0 ELSE attempts END, lease_owner = NULL, lease_expires_at = NULL,
	error = COALESCE($6, error), next_retry_at = $7, updated_at = $8,
	completed_at = CASE WHEN $3 IN ('complete', 'resolved_manually', 'skipped', 'cancelled', 'error') THEN $8 ELSE NULL END
WHERE task_id = $1 AND step_id IN (SELECT value FROM json_each($2)) AND state IN (SELECT value FROM json_each($4))
	AND ($9 IS NULL OR lease_expires_at < $9)
RETURNING step_id, name, previous_state, transition_seq;

-- name: StepLeaseExtend
UPDATE tasker_workflow_steps SET lease_expires_at = $2
WHERE state = 'in_progress' AND lease_owner = $1 AND step_id IN (SELECT value FROM json_each($3));

-- name: RenewLeases
UPDATE tasker_workflow_steps SET lease_expires_at = $1 WHERE step_id IN (SELECT value FROM json_each($2));

-- name: StepLeaseExpired
-- In-progress steps whose lease ended before $1, oldest first, at most $2.
SELECT {{template "step_cols"}} FROM tasker_workflow_steps s
WHERE s.state = 'in_progress' AND s.lease_expires_at < $1 ORDER BY s.lease_expires_at LIMIT $2;

-- name: StepTransitions
SELECT tr.id, tr.task_id, tr.step_id, s.name, COALESCE(tr.from_state, ''), tr.to_state, tr.event,
	tr.reason, tr.actor, tr.metadata, tr.sort_key, tr.sort_key = s.transition_seq, tr.created_at
FROM tasker_workflow_step_transitions tr JOIN tasker_workflow_steps s ON s.step_id = tr.step_id
WHERE s.task_id = $1 ORDER BY tr.step_id, tr.sort_key;
