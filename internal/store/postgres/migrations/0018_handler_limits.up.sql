-- Handler-class limits (docs/flow-control.md#handler-class-limits): at most
-- N attempts of one handler class run at once across all runners. A step of
-- a limited class holds a slot while it is in_progress with slot_attempt
-- equal to its attempts (admission writes it, tasker_handler_admit below);
-- it gives the slot back by leaving in_progress, whatever the path (a
-- recorded result, a throttle, a shutdown's release, the lease rescuer after
-- a crash, a cancellation, a deadline): nothing has to release a slot. A
-- step refused a slot is marked slot_attempt = -1 while it waits for retry.
-- NULL: the step's class is not limited, and nothing below looks at it.
ALTER TABLE tasker_workflow_steps ADD COLUMN slot_attempt integer;
-- Admission counts the slots of a class; the wake finds its waiting steps.
-- state is already in other indexes' predicates, so a step without a slot
-- pays only this predicate's evaluation when its state changes.
CREATE INDEX tasker_workflow_steps_handler_slots ON tasker_workflow_steps (handler_class, slot_attempt)
    WHERE slot_attempt IS NOT NULL AND state IN ('in_progress', 'waiting_for_retry');

-- tasker_handler_admit gives the steps p_steps (in_progress, leased by
-- p_owner, in this order) the slots their class p_class has free under
-- p_limit, and marks the others waiting (-1). It returns one row per step
-- it looked at (granted or not) with the slots held before it, not counting
-- p_steps. Admissions of one class are serialized by a transaction-scoped
-- advisory lock; each statement of the function takes its snapshot after
-- the lock (READ COMMITTED), so the count sees every admission committed
-- before, and a step whose result commit is in flight is still counted.
-- One round trip, and it works behind PgBouncer in transaction mode.
CREATE FUNCTION tasker_handler_admit(p_class text, p_limit integer, p_owner text, p_steps bigint[])
RETURNS TABLE (step_id bigint, granted boolean, running integer) LANGUAGE plpgsql AS $$
DECLARE
    n integer;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('tasker:handler_class:' || p_class, 0));
    SELECT count(*) INTO n FROM tasker_workflow_steps s
    WHERE s.handler_class = p_class AND s.slot_attempt IS NOT NULL AND s.state IN ('in_progress', 'waiting_for_retry')
        AND s.state = 'in_progress' AND s.slot_attempt = s.attempts AND NOT (s.step_id = ANY (p_steps));
    RETURN QUERY
    WITH want AS (
        SELECT w.id, row_number() OVER (ORDER BY w.ord) AS rank
        FROM unnest(p_steps) WITH ORDINALITY AS w (id, ord)
        JOIN tasker_workflow_steps s ON s.step_id = w.id
        WHERE s.state = 'in_progress' AND s.lease_owner = p_owner AND s.handler_class = p_class)
    UPDATE tasker_workflow_steps s SET slot_attempt = CASE WHEN want.rank <= p_limit - n THEN s.attempts ELSE -1 END
    FROM want WHERE s.step_id = want.id
    RETURNING s.step_id, want.rank <= p_limit - n, n;
END;
$$;

-- When a step holding a slot leaves in_progress, the oldest step of its
-- class waiting for a slot (waiting for retry, due later) is made due now,
-- with its task's queue record (when no runner holds it), in the same
-- transaction: the freed slot is offered at once, on every path. Only rows
-- that held a slot reach the function (the WHEN is evaluated without
-- calling it). A step refused while the slot was freed (not yet parked)
-- misses the wake and waits for its recheck (HandlerLimitRecheck).
CREATE FUNCTION tasker_handler_slot_wake() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    w_step bigint;
    w_task bigint;
BEGIN
    SELECT s.step_id, s.task_id INTO w_step, w_task FROM tasker_workflow_steps s
    WHERE s.handler_class = NEW.handler_class AND s.slot_attempt = -1 AND s.state = 'waiting_for_retry'
        AND s.next_retry_at > NEW.updated_at
    ORDER BY s.next_retry_at, s.step_id LIMIT 1
    FOR UPDATE SKIP LOCKED;
    IF w_step IS NULL THEN
        RETURN NULL;
    END IF;
    UPDATE tasker_workflow_steps SET next_retry_at = NEW.updated_at WHERE step_id = w_step;
    UPDATE tasker_task_queue q SET run_at = NEW.updated_at, updated_at = NEW.updated_at
    WHERE q.task_id = w_task AND q.lease_owner IS NULL AND q.run_at > NEW.updated_at;
    RETURN NULL;
END;
$$;
CREATE TRIGGER tasker_handler_slot_wake AFTER UPDATE OF state ON tasker_workflow_steps
    FOR EACH ROW
    WHEN (OLD.slot_attempt > 0 AND OLD.state = 'in_progress' AND NEW.state <> 'in_progress'
        AND OLD.slot_attempt = OLD.attempts)
    EXECUTE FUNCTION tasker_handler_slot_wake();
