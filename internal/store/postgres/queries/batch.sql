-- The cross-task batches (batch.go): statements that apply the calls of
-- many tasks at once, their inputs passed as arrays or one JSON document.

-- name: RecordBatch
-- Applies every outcome of a batch to the steps still in
-- progress under the outcome's owner in the outcome's attempt ($15; 0:
-- any), and a late success to a step the rescuer failed for that same
-- attempt that no later attempt has claimed (see store.StepOutcome.Attempt),
-- and appends their transitions (the attempt number is the step's count
-- before a given-back attempt is undone). It returns the positions of the
-- outcomes applied.
--
-- The outcomes are parallel arrays $1-$13 and $15 (recordColumns). The steps are
-- found by primary key from the id array $1, and the held-state and owner
-- tests are join clauses against the outcome list (OFFSET 0 keeps the
-- planner from folding them into filters on the steps table). The planner
-- knows nothing of the outcome list's length. With the held-state test as
-- a filter, stale statistics right after a wide fan-out started estimated
-- one in-progress step and the planner re-scanned the whole outcome list
-- for every step (2,000 outcomes: 800 ms instead of 50 ms); without the id
-- list it chose a sequential scan of every step for a one-outcome batch.
--
-- It also locks the rows of the tasks to finalize ($14): two coordinators
-- of one task finalizing at once in separate transactions would each see
-- the other's last steps still in progress and both leave the task to the
-- other. With the lock the second waits for the first to commit, and its
-- summary, a later statement, sees the first's results.
WITH locked AS (
	SELECT task_id FROM tasker_tasks WHERE task_id = ANY($14::bigint[]) ORDER BY task_id FOR UPDATE),
rec AS (
	UPDATE tasker_workflow_steps AS s SET state = o.state, previous_state = s.state, transition_seq = s.transition_seq + 1,
		results = COALESCE(o.results, s.results), error = o.error, next_retry_at = o.next_retry_at,
		backoff_request_seconds = o.backoff, attempts = s.attempts - o.give_back, lease_owner = NULL, lease_expires_at = NULL,
		updated_at = o.now, completed_at = o.completed_at
	FROM (SELECT o.*, o.ord - 1 AS n, 'in_progress'::text AS held_state,
			o.state = 'complete' AND o.attempt > 0 AND o.give_back = 0 AS late_ok
		FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[], $8::jsonb[],
			$9::timestamptz[], $10::integer[], $11::integer[], $12::timestamptz[], $13::timestamptz[], $15::integer[])
			WITH ORDINALITY AS o(step_id, owner, state, event, reason, results, error, meta, next_retry_at, backoff,
			give_back, now, completed_at, attempt, ord) OFFSET 0) AS o
	WHERE s.step_id = ANY($1::bigint[]) AND s.step_id = o.step_id AND (o.attempt = 0 OR s.attempts = o.attempt)
		AND ((s.state = o.held_state AND s.lease_owner = o.owner)
			OR (o.late_ok AND s.state = 'waiting_for_retry' AND s.error ->> 'kind' = 'lease_expired'))
	RETURNING o.n, s.step_id, s.task_id, s.previous_state, s.transition_seq, s.attempts + o.give_back AS attempt,
		o.state, o.event, o.reason, o.owner, o.meta, o.now),
tr AS (
	INSERT INTO tasker_workflow_step_transitions (step_id, task_id, from_state, to_state, event, reason, actor,
		metadata, sort_key, created_at)
	SELECT step_id, task_id, previous_state, state, event, reason, owner, meta || jsonb_build_object('attempt', attempt),
		transition_seq, now
	FROM rec ORDER BY n)
SELECT n FROM rec WHERE (SELECT count(*) FROM locked) >= 0;

-- name: Summaries
-- The finalizer's summary of several tasks, each at its own
-- time: $1 task ids (distinct), $2 times. The summary is a LATERAL
-- aggregate per task so that each task's steps are read through the task_id
-- index: as a join and GROUP BY, a generic plan made while the steps table
-- was small hash-joined a scan of every step.
SELECT r.task_id, x.* FROM unnest($1::bigint[], $2::timestamptz[]) AS r(task_id, now)
CROSS JOIN LATERAL (SELECT {{template "summary_cols" "r.now"}}
	FROM tasker_workflow_steps s WHERE s.task_id = r.task_id) AS x;

-- name: TaskMoves
-- Applies guarded task transitions (a task moves only from one
-- of its from_states), appends their transition rows and applies their
-- queue operations, all in one statement. The enqueue record is in the
-- task's row (migration 0021): writing or clearing it is part of the same
-- UPDATE, so a finish that dequeues its task writes no other row. It
-- returns the positions of the transitions applied. Rows are found by primary key from arrays: joined
-- with a CTE of unknown size the planner scans whole tables instead.
WITH moved AS (
	UPDATE tasker_tasks t SET state = v.to_state, previous_state = t.state, transition_seq = t.transition_seq + 1,
		updated_at = v.now, completed_at = CASE WHEN v.terminal THEN v.now ELSE NULL END,
		keep_until = CASE WHEN v.terminal THEN v.now + CASE WHEN v.to_state = 'error' THEN t.retention_failed_seconds
			ELSE t.retention_seconds END * interval '1 second' END,
		queue_operation = CASE v.queue WHEN 'upsert' THEN v.operation WHEN 'delete' THEN NULL ELSE t.queue_operation END,
		queue_run_at = CASE v.queue WHEN 'upsert' THEN v.run_at WHEN 'delete' THEN NULL ELSE t.queue_run_at END,
		queue_priority = CASE v.queue WHEN 'upsert' THEN v.priority WHEN 'delete' THEN NULL ELSE t.queue_priority END,
		queue_attempts = CASE v.queue WHEN 'upsert' THEN 0 WHEN 'delete' THEN NULL ELSE t.queue_attempts END,
		queue_reason = CASE v.queue WHEN 'upsert' THEN v.queue_reason WHEN 'delete' THEN NULL ELSE t.queue_reason END,
		queue_lease_owner = CASE WHEN v.queue IN ('upsert', 'delete') THEN NULL ELSE t.queue_lease_owner END,
		queue_lease_expires_at = CASE WHEN v.queue IN ('upsert', 'delete') THEN NULL ELSE t.queue_lease_expires_at END,
		queue_created_at = CASE v.queue WHEN 'upsert' THEN COALESCE(t.queue_created_at, v.now) WHEN 'delete' THEN NULL
			ELSE t.queue_created_at END,
		queue_updated_at = CASE v.queue WHEN 'upsert' THEN v.now WHEN 'delete' THEN NULL ELSE t.queue_updated_at END
	FROM (SELECT v.*, v.ord - 1 AS n FROM unnest($1::bigint[], $2::text[], $3::text[], $4::boolean[], $5::text[], $6::text[],
		$7::text[], $8::jsonb[], $9::timestamptz[], $10::text[], $11::text[], $12::timestamptz[], $13::integer[], $14::text[])
		WITH ORDINALITY AS v(task_id, to_state, from_states, terminal, event, reason, actor, meta, now, queue, operation,
		run_at, priority, queue_reason, ord) OFFSET 0) AS v
	WHERE t.task_id = ANY($1::bigint[]) AND t.task_id = v.task_id AND t.state = ANY(string_to_array(v.from_states, ','))
	RETURNING v.n, t.task_id, t.previous_state, t.transition_seq, v.to_state, v.event, v.reason, v.actor, v.meta, v.now),
tr AS (
	INSERT INTO tasker_task_transitions (task_id, from_state, to_state, event, reason, actor, metadata, sort_key, created_at)
	SELECT task_id, previous_state, to_state, event, reason, actor, meta, transition_seq, now FROM moved ORDER BY n)
SELECT n, previous_state, transition_seq FROM moved;

-- name: ClaimBatch
-- Claims, for each claim of the batch, up to its limit of the
-- task's ready steps (lowest ids first, skipping steps another transaction
-- holds), leases them to its owner and appends their claim transitions. It
-- returns the claimed steps (stepCols), their previous state, new
-- transition_seq, whether they have parents, and the claim's position.
-- A claim with names looks only at the steps of those names (through the
-- (task_id, name) index) instead of checking every pending step's
-- readiness in step order.
-- The update finds the picked rows by their tuple id (ctid): they are
-- locked by this statement, so no other transaction can move them; a
-- primary-key descent per row was most of the 7 % of server time that
-- wide fan-outs spent in index lookups by id.
--
-- A claim without a time of its own is stamped with the database's clock
-- when the statement starts, and its lease runs lease_us from then.
WITH r AS MATERIALIZED (
	SELECT r.n, r.task_id, r.owner, r.lim, COALESCE(r.now, statement_timestamp()) AS now,
		COALESCE(r.lease_until, statement_timestamp() + r.lease_us * interval '1 microsecond') AS lease_until, r.names
	FROM jsonb_to_recordset($1::jsonb) AS r(n integer, task_id bigint, owner text, lim integer, now timestamptz,
		lease_until timestamptz, lease_us bigint, names text[])),
picked AS (
	SELECT r.n, c.step_id, c.ctid FROM r CROSS JOIN LATERAL (
		SELECT s.step_id, s.ctid FROM tasker_workflow_steps s
		WHERE r.names IS NULL AND s.task_id = r.task_id AND {{template "ready" "r.now"}}
		ORDER BY s.step_id LIMIT r.lim FOR UPDATE SKIP LOCKED) c
	UNION ALL
	SELECT r.n, c.step_id, c.ctid FROM r CROSS JOIN LATERAL (
		SELECT s.step_id, s.ctid FROM tasker_workflow_steps s
		WHERE r.names IS NOT NULL AND s.task_id = r.task_id AND s.name = ANY(r.names)
			AND {{template "ready" "r.now"}}
		ORDER BY s.step_id LIMIT r.lim FOR UPDATE SKIP LOCKED) c),
claimed AS (
	UPDATE tasker_workflow_steps s SET state = 'in_progress', previous_state = s.state,
		transition_seq = s.transition_seq + 1, attempts = s.attempts + 1, last_attempted_at = r.now,
		lease_owner = r.owner, lease_expires_at = r.lease_until, next_retry_at = NULL, updated_at = r.now
	FROM picked p JOIN r ON r.n = p.n
	WHERE s.ctid = ANY(ARRAY(SELECT ctid FROM picked)) AND s.step_id = p.step_id
	RETURNING {{template "step_cols"}}, s.previous_state, s.transition_seq,
		EXISTS (SELECT 1 FROM tasker_workflow_step_edges e WHERE e.to_step_id = s.step_id) AS has_parents,
		p.n AS claim_n, r.owner AS claim_owner, r.now AS claim_now, s.attempts AS claim_attempt),
tr AS (
	INSERT INTO tasker_workflow_step_transitions (step_id, task_id, from_state, to_state, event, reason, actor,
		metadata, sort_key, created_at)
	SELECT step_id, task_id, previous_state, 'in_progress', 'claim', '', claim_owner,
		jsonb_build_object('attempt', claim_attempt), transition_seq, claim_now
	FROM claimed ORDER BY claim_n, step_id)
SELECT * FROM claimed ORDER BY claim_n, step_id;

-- name: LockTasks
-- Locks the rows of tasks $1 (in id order) until the transaction ends.
SELECT 1 FROM tasker_tasks WHERE task_id = ANY($1::bigint[]) ORDER BY task_id FOR UPDATE;

-- name: TaskStates
SELECT task_id, state FROM tasker_tasks WHERE task_id = ANY($1::bigint[]);

-- name: StartedTasks
-- Tasks $1 after their start transitions, with the state a moved task
-- left (previous_state) and its transition_seq.
SELECT {{template "task_cols"}}, COALESCE(t.previous_state, ''), t.transition_seq FROM tasker_tasks t
WHERE t.task_id = ANY($1::bigint[]);
