-- The wake triggers on the task row's queue columns, whatever order 0021
-- and 0022 ran in. A database migrated before 0021 existed ran 0022 first
-- and then 0021, which left these definitions; a fresh one runs 0021 and
-- then 0022, whose triggers reach the queue record through the
-- tasker_task_queue view. Both now end with the same triggers: 0021's,
-- with 0022's planner hints, writing the columns directly.
DROP TRIGGER tasker_tasks_concurrency_wake;
DROP TRIGGER tasker_handler_slot_wake;
CREATE TRIGGER tasker_tasks_concurrency_wake AFTER UPDATE OF state ON tasker_tasks
    FOR EACH ROW
    WHEN NEW.concurrency_key IS NOT NULL AND OLD.state IN ('in_progress', 'waiting_for_retry')
        AND NEW.state NOT IN ('in_progress', 'waiting_for_retry')
BEGIN
    UPDATE tasker_tasks SET queue_run_at = NEW.updated_at, queue_updated_at = NEW.updated_at
    WHERE task_id = (
            SELECT t.task_id FROM tasker_tasks t
            WHERE t.concurrency_key = NEW.concurrency_key AND t.completed_at IS NULL AND +t.state = 'pending'
                AND (t.run_at IS NULL OR t.run_at <= NEW.updated_at)
                AND t.queue_lease_owner IS NULL AND t.queue_run_at > NEW.updated_at
            ORDER BY t.priority DESC, t.task_id LIMIT 1)
        AND queue_lease_owner IS NULL AND queue_run_at > NEW.updated_at;
END;
CREATE TRIGGER tasker_handler_slot_wake AFTER UPDATE OF state ON tasker_workflow_steps
    FOR EACH ROW
    WHEN OLD.slot_attempt > 0 AND OLD.state = 'in_progress' AND NEW.state <> 'in_progress'
        AND OLD.slot_attempt = OLD.attempts
BEGIN
    UPDATE tasker_tasks SET queue_run_at = NEW.updated_at, queue_updated_at = NEW.updated_at
    WHERE task_id = (
            SELECT s.task_id FROM tasker_workflow_steps s
            WHERE s.handler_class = NEW.handler_class AND s.slot_attempt = -1
                AND s.state IN ('in_progress', 'waiting_for_retry') AND s.state = 'waiting_for_retry'
                AND s.next_retry_at > NEW.updated_at
            ORDER BY s.next_retry_at, s.step_id LIMIT 1)
        AND queue_lease_owner IS NULL AND queue_run_at > NEW.updated_at;
    UPDATE tasker_workflow_steps SET next_retry_at = NEW.updated_at
    WHERE step_id = (
            SELECT s.step_id FROM tasker_workflow_steps s
            WHERE s.handler_class = NEW.handler_class AND s.slot_attempt = -1
                AND s.state IN ('in_progress', 'waiting_for_retry') AND s.state = 'waiting_for_retry'
                AND s.next_retry_at > NEW.updated_at
            ORDER BY s.next_retry_at, s.step_id LIMIT 1);
END;
