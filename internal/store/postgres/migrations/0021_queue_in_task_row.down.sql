-- The queue back in its own table (0001, 0005, 0008), the wakes as 0020
-- defined them.
DROP VIEW tasker_task_queue;
DROP FUNCTION tasker_task_queue_write();
CREATE TABLE tasker_task_queue (
    task_id          bigint PRIMARY KEY REFERENCES tasker_tasks (task_id) ON DELETE CASCADE,
    operation        text NOT NULL,
    run_at           timestamptz NOT NULL,
    priority         integer NOT NULL DEFAULT 0,
    attempts         integer NOT NULL DEFAULT 0,
    reason           text NOT NULL DEFAULT '',
    lease_owner      text,
    lease_expires_at timestamptz,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
) WITH (fillfactor = 50);
INSERT INTO tasker_task_queue (task_id, operation, run_at, priority, attempts, reason, lease_owner, lease_expires_at,
    created_at, updated_at)
SELECT task_id, COALESCE(queue_operation, 'enqueue'), queue_run_at, COALESCE(queue_priority, 0), COALESCE(queue_attempts, 0),
    COALESCE(queue_reason, ''), queue_lease_owner, queue_lease_expires_at, COALESCE(queue_created_at, queue_run_at),
    COALESCE(queue_updated_at, queue_run_at)
FROM tasker_tasks WHERE queue_run_at IS NOT NULL;
CREATE INDEX tasker_task_queue_due ON tasker_task_queue (run_at);
CREATE INDEX tasker_task_queue_claim ON tasker_task_queue (priority DESC, run_at);

DROP INDEX tasker_tasks_queue_claim;
DROP INDEX tasker_tasks_queue_due;
ALTER TABLE tasker_tasks
    DROP COLUMN queue_operation,
    DROP COLUMN queue_run_at,
    DROP COLUMN queue_priority,
    DROP COLUMN queue_attempts,
    DROP COLUMN queue_reason,
    DROP COLUMN queue_lease_owner,
    DROP COLUMN queue_lease_expires_at,
    DROP COLUMN queue_created_at,
    DROP COLUMN queue_updated_at;

CREATE OR REPLACE FUNCTION tasker_tasks_concurrency_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tasker_task_queue q SET run_at = NEW.updated_at, updated_at = NEW.updated_at
    WHERE q.task_id = (
            SELECT w.task_id FROM tasker_tasks t JOIN tasker_task_queue w ON w.task_id = t.task_id
            WHERE t.concurrency_key = NEW.concurrency_key AND t.completed_at IS NULL AND t.state = 'pending'
                AND (t.run_at IS NULL OR t.run_at <= NEW.updated_at)
                AND w.lease_owner IS NULL AND w.run_at > NEW.updated_at AND w.run_at > w.updated_at
            ORDER BY t.priority DESC, t.task_id LIMIT 1
            FOR UPDATE OF w SKIP LOCKED)
        AND q.lease_owner IS NULL AND q.run_at > NEW.updated_at AND q.run_at > q.updated_at;
    IF FOUND THEN
        PERFORM pg_notify('tasker_queue', TG_TABLE_SCHEMA);
    END IF;
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION tasker_handler_slot_wake() RETURNS trigger LANGUAGE plpgsql AS $$
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
    IF FOUND THEN
        PERFORM pg_notify('tasker_queue', TG_TABLE_SCHEMA);
    END IF;
    RETURN NULL;
END;
$$;
