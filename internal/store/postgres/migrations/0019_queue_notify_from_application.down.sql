CREATE OR REPLACE FUNCTION tasker_task_queue_notify_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM tasker_queue_new_rows WHERE lease_owner IS NULL) THEN
        PERFORM pg_notify('tasker_queue', TG_TABLE_SCHEMA);
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER tasker_task_queue_notify_insert AFTER INSERT ON tasker_task_queue
    REFERENCING NEW TABLE AS tasker_queue_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tasker_task_queue_notify_rows();
CREATE TRIGGER tasker_task_queue_notify_update AFTER UPDATE ON tasker_task_queue
    REFERENCING NEW TABLE AS tasker_queue_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION tasker_task_queue_notify_rows();
