-- Notify runners only when a queue entry becomes available (inserted, or
-- updated with no lease owner: released or re-enqueued). The statement-level
-- trigger of 0001 also fired on every claim, even one that updated no row,
-- so each idle runner woke itself and the others in a loop. The payload now
-- names the schema, so that deployments in different schemas of one database
-- do not wake each other's runners.
CREATE OR REPLACE FUNCTION tasker_task_queue_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tasker_queue', TG_TABLE_SCHEMA);
    RETURN NULL;
END;
$$;
DROP TRIGGER IF EXISTS tasker_task_queue_notify ON tasker_task_queue;
CREATE TRIGGER tasker_task_queue_notify AFTER INSERT OR UPDATE OF run_at, lease_owner ON tasker_task_queue
    FOR EACH ROW WHEN (NEW.lease_owner IS NULL) EXECUTE FUNCTION tasker_task_queue_notify();
