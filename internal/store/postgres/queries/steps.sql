-- Steps: reading, the operator's and rescuer's moves, leases.

-- name: StepList
SELECT {{template "step_cols"}} FROM tasker_workflow_steps s WHERE s.task_id = $1 ORDER BY s.step_id;

-- name: StepsByID
SELECT {{template "step_cols"}} FROM tasker_workflow_steps s WHERE s.task_id = $1 AND s.step_id = ANY($2::bigint[])
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

-- name: DependencyResults
-- The claimed steps' ($1) edges (rows with a child id), then each distinct
-- parent's name and results once (rows with child 0): a fan-out's 2,000
-- leaves read their root's results once, not 2,000 times. The parents are
-- found by primary key from an array; as a join the planner hashed a
-- sequential scan of every step (25 % of the server's time in a
-- 100,000-step fan-out).
WITH e AS MATERIALIZED (
	SELECT e.to_step_id, e.from_step_id FROM tasker_workflow_step_edges e WHERE e.to_step_id = ANY($1::bigint[]))
SELECT e.to_step_id, e.from_step_id, '', NULL FROM e
UNION ALL
SELECT 0, p.step_id, p.name, p.results FROM tasker_workflow_steps p
WHERE p.step_id = ANY(ARRAY(SELECT DISTINCT from_step_id FROM e));

-- name: StepsMove
-- Steps $2 of task $1 in one of states $4 move to $3; $5 resets their
-- attempts, $6 is their error, $7 their next retry, $8 the time. With $9
-- set only steps whose lease ended before it move (the zero time: the
-- server's clock, which leases are granted and extended by).
UPDATE tasker_workflow_steps SET state = $3, previous_state = state, transition_seq = transition_seq + 1,
	attempts = CASE WHEN $5::boolean THEN 0 ELSE attempts END, lease_owner = NULL, lease_expires_at = NULL,
	error = COALESCE($6::jsonb, error), next_retry_at = $7::timestamptz, updated_at = $8::timestamptz,
	completed_at = CASE WHEN $3::text IN ('complete', 'resolved_manually', 'skipped', 'cancelled', 'error') THEN $8::timestamptz ELSE NULL END
WHERE task_id = $1 AND step_id = ANY($2::bigint[]) AND state = ANY($4::text[])
	AND ($9::timestamptz IS NULL OR lease_expires_at < COALESCE(NULLIF($9::timestamptz, '0001-01-01 00:00:00+00'), statement_timestamp()))
RETURNING step_id, name, previous_state, transition_seq;

-- name: StepTransitionsInsert
-- The steps' new transitions in one statement: $1 task id, $2..$9 one
-- array per column (in row order), $10 created_at.
INSERT INTO tasker_workflow_step_transitions (step_id, task_id, from_state, to_state, event, reason, actor,
	metadata, sort_key, created_at)
SELECT v.step_id, $1, v.from_state, v.to_state, v.event, v.reason, v.actor, v.metadata::jsonb, v.sort_key, $10::timestamptz
FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::integer[])
	WITH ORDINALITY AS v(step_id, from_state, to_state, event, reason, actor, metadata, sort_key, n)
ORDER BY v.n;

-- name: StepLeaseExtend
-- Extends the leases of steps $3 still held by $1 to $2 microseconds after
-- the server's clock, and returns how many it extended and the new end.
WITH u AS (
	UPDATE tasker_workflow_steps SET lease_expires_at = statement_timestamp() + $2::bigint * interval '1 microsecond'
	WHERE state = 'in_progress' AND lease_owner = $1 AND step_id = ANY($3::bigint[]) RETURNING 1)
SELECT (SELECT count(*) FROM u)::integer, statement_timestamp() + $2::bigint * interval '1 microsecond';

-- name: RenewLeases
-- Restarts the leases of steps $2 (claimed by this transaction) for $1
-- microseconds from the clock now, and returns their new end.
WITH u AS (UPDATE tasker_workflow_steps SET lease_expires_at = clock_timestamp() + $1::bigint * interval '1 microsecond'
	WHERE step_id = ANY($2::bigint[]) RETURNING lease_expires_at)
SELECT max(lease_expires_at) FROM u;

-- name: StepLeaseExpired
-- In-progress steps whose lease ended before $1 (the zero time: the
-- server's clock), oldest first, at most $2.
SELECT {{template "step_cols"}} FROM tasker_workflow_steps s
WHERE s.state = 'in_progress'
	AND s.lease_expires_at < COALESCE(NULLIF($1::timestamptz, '0001-01-01 00:00:00+00'), statement_timestamp())
ORDER BY s.lease_expires_at LIMIT $2;

-- name: StepTransitions
SELECT tr.id, tr.task_id, tr.step_id, s.name, COALESCE(tr.from_state, ''), tr.to_state, tr.event,
	tr.reason, tr.actor, tr.metadata, tr.sort_key, tr.sort_key = s.transition_seq, tr.created_at
FROM tasker_workflow_step_transitions tr JOIN tasker_workflow_steps s ON s.step_id = tr.step_id
WHERE s.task_id = $1 ORDER BY tr.step_id, tr.sort_key;

-- name: ReadyStepIDs
-- The claim's candidate search without its row locks: the steps of task
-- $1 ready at $2, at most $3 (benchmarks and EXPLAIN of the claim).
SELECT s.step_id FROM tasker_workflow_steps s WHERE s.task_id = $1 AND {{template "ready" "$2"}}
ORDER BY s.step_id LIMIT $3;
