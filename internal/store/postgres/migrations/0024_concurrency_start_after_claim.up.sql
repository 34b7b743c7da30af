-- Admission of the tasks with a concurrency key that a runner's queue claim
-- leased (store.QueueClaimParams.Start): QueueClaimStart starts the tasks
-- without a key in the claim's own statement; the pending tasks with a key
-- it leased are then given to tasker_concurrency_start, one call per claim.
-- Before this, each such task was admitted in the coordinator's first claim
-- transaction (two statements of their own, then the start), which made a
-- key cost half again as much CPU per single-step task as none.
--
-- The function locks the keys of the pending tasks of p_ids in hash order
-- (the lock ConcurrencyLock and ConcurrencyLockMany take), holding no row
-- lock of its own while it waits; its next statement takes its snapshot
-- after the locks (READ COMMITTED, a VOLATILE function), so it counts
-- every admission committed before; it reads the keys' running tasks FOR
-- SHARE, so a finish in flight is waited for and then not counted, one key
-- at a time (an equality the planner serves from tasker_tasks_concurrency
-- with or without statistics: given the keys as "= ANY (array)", it
-- scanned every unfinished task through tasker_tasks_unfinished, the
-- backlog read once per admission). It
-- starts the tasks their key has room for (highest priority, then oldest,
-- first), appends their start transitions (actor p_actor, reason p_reason)
-- and returns them with their transition_seq and updated_at.
--
-- The start is stamped after the locks and the count (the running rows'
-- locks are taken before the update), never before the finish that freed
-- a slot (the audit of transitions must never show a key over its limit):
-- with p_at NULL, the database's clock then (the engine on the system
-- clock, as its step claims do); otherwise p_at, the caller's clock when it
-- sent the call, plus the time the call spent in the database (a test's
-- fake clock, which only a difference of the database's clock leaves
-- consistent). A task it does not
-- start stays pending and leased: its coordinator admits it as before and
-- applies the key's policy. One round trip; it works behind PgBouncer in
-- transaction mode.
CREATE FUNCTION tasker_concurrency_start(p_ids bigint[], p_actor text, p_at timestamptz, p_reason text)
RETURNS TABLE (started_id bigint, started_seq integer, started_at timestamptz) LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1952805748, d.h)
    FROM (SELECT DISTINCT hashtext(t.concurrency_key) AS h FROM tasker_tasks t
        WHERE t.task_id = ANY (p_ids) AND t.state = 'pending' AND t.concurrency_key IS NOT NULL
        ORDER BY 1) d;
    RETURN QUERY
    WITH cand AS MATERIALIZED (
        SELECT t.task_id, t.concurrency_key AS k, t.concurrency_limit AS lim,
            row_number() OVER (PARTITION BY t.concurrency_key ORDER BY t.priority DESC, t.task_id) AS rank
        FROM tasker_tasks t
        WHERE t.task_id = ANY (p_ids) AND t.state = 'pending' AND t.concurrency_key IS NOT NULL),
    counts AS (
        SELECT c.k, count(r.task_id) AS n FROM (SELECT DISTINCT c.k FROM cand c) c
        CROSS JOIN LATERAL (
            SELECT r.task_id FROM tasker_tasks r
            WHERE r.concurrency_key = c.k AND r.completed_at IS NULL AND r.state IN ('in_progress', 'waiting_for_retry')
            FOR SHARE) r
        GROUP BY c.k),
    started AS (
        UPDATE tasker_tasks t SET state = 'in_progress', previous_state = t.state,
            transition_seq = t.transition_seq + 1,
            updated_at = COALESCE(p_at + (clock_timestamp() - statement_timestamp()), clock_timestamp())
        WHERE t.task_id = ANY (ARRAY(
                SELECT c.task_id FROM cand c LEFT JOIN counts n ON n.k = c.k
                WHERE c.rank + COALESCE(n.n, 0) <= c.lim))
            AND t.state = 'pending'
        RETURNING t.task_id, t.transition_seq, t.updated_at),
    tr AS (
        INSERT INTO tasker_task_transitions (task_id, from_state, to_state, event, reason, actor, metadata, sort_key,
            created_at)
        SELECT s.task_id, 'pending', 'in_progress', 'start', p_reason, p_actor, NULL, s.transition_seq, s.updated_at
        FROM started s ORDER BY s.task_id)
    SELECT s.task_id, s.transition_seq, s.updated_at FROM started s;
END;
$$;
