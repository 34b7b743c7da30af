-- The wake triggers as 0022 defined them (through the tasker_task_queue view).
DROP TRIGGER tasker_tasks_concurrency_wake;
CREATE TRIGGER tasker_tasks_concurrency_wake AFTER UPDATE OF state ON tasker_tasks
    FOR EACH ROW
    WHEN NEW.concurrency_key IS NOT NULL AND OLD.state IN ('in_progress', 'waiting_for_retry')
        AND NEW.state NOT IN ('in_progress', 'waiting_for_retry')
BEGIN
    UPDATE tasker_task_queue SET run_at = NEW.updated_at, updated_at = NEW.updated_at
    WHERE task_id = (
            SELECT t.task_id FROM tasker_tasks t JOIN tasker_task_queue w ON w.task_id = t.task_id
            WHERE t.concurrency_key = NEW.concurrency_key AND t.completed_at IS NULL AND +t.state = 'pending'
                AND (t.run_at IS NULL OR t.run_at <= NEW.updated_at)
                AND w.lease_owner IS NULL AND w.run_at > NEW.updated_at
            ORDER BY t.priority DESC, t.task_id LIMIT 1)
        AND lease_owner IS NULL AND run_at > NEW.updated_at;
END;

DROP TRIGGER tasker_handler_slot_wake;
CREATE TRIGGER tasker_handler_slot_wake AFTER UPDATE OF state ON tasker_workflow_steps
    FOR EACH ROW
    WHEN OLD.slot_attempt > 0 AND OLD.state = 'in_progress' AND NEW.state <> 'in_progress'
        AND OLD.slot_attempt = OLD.attempts
BEGIN
    UPDATE tasker_task_queue SET run_at = NEW.updated_at, updated_at = NEW.updated_at
    WHERE task_id = (
            SELECT s.task_id FROM tasker_workflow_steps s
            WHERE s.handler_class = NEW.handler_class AND s.slot_attempt = -1
                AND s.state IN ('in_progress', 'waiting_for_retry') AND s.state = 'waiting_for_retry'
                AND s.next_retry_at > NEW.updated_at
            ORDER BY s.next_retry_at, s.step_id LIMIT 1)
        AND lease_owner IS NULL AND run_at > NEW.updated_at;
    UPDATE tasker_workflow_steps SET next_retry_at = NEW.updated_at
    WHERE step_id = (
            SELECT s.step_id FROM tasker_workflow_steps s
            WHERE s.handler_class = NEW.handler_class AND s.slot_attempt = -1
                AND s.state IN ('in_progress', 'waiting_for_retry') AND s.state = 'waiting_for_retry'
                AND s.next_retry_at > NEW.updated_at
            ORDER BY s.next_retry_at, s.step_id LIMIT 1);
END;
