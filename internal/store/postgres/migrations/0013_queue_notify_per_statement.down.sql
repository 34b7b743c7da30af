DROP TRIGGER IF EXISTS tasker_task_queue_notify_insert ON tasker_task_queue;
DROP TRIGGER IF EXISTS tasker_task_queue_notify_update ON tasker_task_queue;
DROP FUNCTION IF EXISTS tasker_task_queue_notify_rows();
CREATE TRIGGER tasker_task_queue_notify AFTER INSERT OR UPDATE OF run_at, lease_owner ON tasker_task_queue
    FOR EACH ROW WHEN (NEW.lease_owner IS NULL) EXECUTE FUNCTION tasker_task_queue_notify();
