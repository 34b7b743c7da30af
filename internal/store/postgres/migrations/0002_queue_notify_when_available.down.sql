CREATE OR REPLACE FUNCTION tasker_task_queue_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tasker_queue', '');
    RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS tasker_task_queue_notify ON tasker_task_queue;
CREATE TRIGGER tasker_task_queue_notify AFTER INSERT OR UPDATE OF run_at, lease_owner ON tasker_task_queue
    FOR EACH STATEMENT EXECUTE FUNCTION tasker_task_queue_notify();
