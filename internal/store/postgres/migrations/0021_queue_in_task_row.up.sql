-- The queue in the task row (issue 18 item 3). A task's durable enqueue
-- record (at most one per task since 0001) moves from its own table,
-- tasker_task_queue, into queue_* columns of the task: queue_run_at is NULL
-- when the task has no record. A new task's record is written by its
-- INSERT (one row and three index entries fewer per task: the queue's
-- primary key, due and claim indexes), a claim leases the task row itself
-- (no indexed column changes: a heap-only update when the page has room),
-- and the finalizer's transition clears the record in the same UPDATE that
-- finishes the task instead of a DELETE of another row. The partial indexes
-- below hold queued tasks only, so their size follows the queue, not the
-- history. A read-only view keeps the old table's name and columns for
-- operators' queries.
ALTER TABLE tasker_tasks
    ADD COLUMN queue_operation text,
    ADD COLUMN queue_run_at timestamptz,
    ADD COLUMN queue_priority integer,
    ADD COLUMN queue_attempts integer,
    ADD COLUMN queue_reason text,
    ADD COLUMN queue_lease_owner text,
    ADD COLUMN queue_lease_expires_at timestamptz,
    ADD COLUMN queue_created_at timestamptz,
    ADD COLUMN queue_updated_at timestamptz;

UPDATE tasker_tasks t SET queue_operation = q.operation, queue_run_at = q.run_at, queue_priority = q.priority,
    queue_attempts = q.attempts, queue_reason = q.reason, queue_lease_owner = q.lease_owner,
    queue_lease_expires_at = q.lease_expires_at, queue_created_at = q.created_at, queue_updated_at = q.updated_at
FROM tasker_task_queue q WHERE q.task_id = t.task_id;

DROP TABLE tasker_task_queue;

-- Runners claim due records in priority order, then oldest first (0005);
-- the earliest unleased record (an idle runner's next wake-up) and the
-- operators' list read them by due time.
CREATE INDEX tasker_tasks_queue_claim ON tasker_tasks (queue_priority DESC, queue_run_at) WHERE queue_run_at IS NOT NULL;
CREATE INDEX tasker_tasks_queue_due ON tasker_tasks (queue_run_at) WHERE queue_run_at IS NOT NULL;

CREATE VIEW tasker_task_queue AS
SELECT task_id, queue_operation AS operation, queue_run_at AS run_at, queue_priority AS priority,
    queue_attempts AS attempts, queue_reason AS reason, queue_lease_owner AS lease_owner,
    queue_lease_expires_at AS lease_expires_at, queue_created_at AS created_at, queue_updated_at AS updated_at
FROM tasker_tasks WHERE queue_run_at IS NOT NULL;
-- Statements written for the table keep working through the view: an
-- update goes through to the task's columns (the view is automatically
-- updatable), an insert writes the task's record and a delete clears it
-- (never the task).
CREATE FUNCTION tasker_task_queue_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        UPDATE tasker_tasks SET queue_operation = NULL, queue_run_at = NULL, queue_priority = NULL,
            queue_attempts = NULL, queue_reason = NULL, queue_lease_owner = NULL, queue_lease_expires_at = NULL,
            queue_created_at = NULL, queue_updated_at = NULL
        WHERE task_id = OLD.task_id;
        RETURN OLD;
    END IF;
    UPDATE tasker_tasks SET queue_operation = NEW.operation, queue_run_at = NEW.run_at,
        queue_priority = COALESCE(NEW.priority, 0), queue_attempts = COALESCE(NEW.attempts, 0),
        queue_reason = COALESCE(NEW.reason, ''), queue_lease_owner = NEW.lease_owner,
        queue_lease_expires_at = NEW.lease_expires_at, queue_created_at = NEW.created_at,
        queue_updated_at = NEW.updated_at
    WHERE task_id = NEW.task_id;
    RETURN NEW;
END;
$$;
CREATE TRIGGER tasker_task_queue_write INSTEAD OF INSERT OR DELETE ON tasker_task_queue
    FOR EACH ROW EXECUTE FUNCTION tasker_task_queue_write();

-- The wakes of 0020, on the task row's record. The parked candidate is
-- locked FOR NO KEY UPDATE (what the update takes anyway): FOR UPDATE would
-- also wait for the key-share locks of rows inserted for the task.
CREATE OR REPLACE FUNCTION tasker_tasks_concurrency_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tasker_tasks q SET queue_run_at = NEW.updated_at, queue_updated_at = NEW.updated_at
    WHERE q.task_id = (
            SELECT t.task_id FROM tasker_tasks t
            WHERE t.concurrency_key = NEW.concurrency_key AND t.completed_at IS NULL AND t.state = 'pending'
                AND (t.run_at IS NULL OR t.run_at <= NEW.updated_at)
                AND t.queue_lease_owner IS NULL AND t.queue_run_at > NEW.updated_at
                AND t.queue_run_at > t.queue_updated_at
            ORDER BY t.priority DESC, t.task_id LIMIT 1
            FOR NO KEY UPDATE SKIP LOCKED)
        AND q.queue_lease_owner IS NULL AND q.queue_run_at > NEW.updated_at AND q.queue_run_at > q.queue_updated_at;
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
    UPDATE tasker_tasks q SET queue_run_at = NEW.updated_at, queue_updated_at = NEW.updated_at
    WHERE q.task_id = w_task AND q.queue_lease_owner IS NULL AND q.queue_run_at > NEW.updated_at;
    IF FOUND THEN
        PERFORM pg_notify('tasker_queue', TG_TABLE_SCHEMA);
    END IF;
    RETURN NULL;
END;
$$;
