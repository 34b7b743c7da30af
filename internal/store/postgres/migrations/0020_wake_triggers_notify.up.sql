-- The two wakes the database makes by itself (a task of a concurrency key
-- stops running: its key's oldest parked task is made due, 0015/0017; a
-- step gives its handler-class slot back: the class's oldest waiting step
-- and its task are made due, 0018) now also notify the runners. Since
-- 0019 dropped the queue triggers, runners are woken by the application
-- after its commits, and the application does not see these updates: a
-- woken task waited for a runner's idle poll (up to 5 s). The NOTIFY is
-- sent only when a record was made due, inside the finishing transaction,
-- so it is delivered at its commit; the global notification lock is taken
-- only by the transactions that woke something.
--
-- And a delayed task of the key (tasks.run_at still ahead) is no longer
-- taken for a parked one: its queue record waits for its run_at, which a
-- freed slot used to bring forward, starting it early.
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
