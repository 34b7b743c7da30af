-- The wake trigger as 0015 defined it.
DROP TRIGGER tasker_tasks_concurrency_wake;
CREATE TRIGGER tasker_tasks_concurrency_wake AFTER UPDATE OF state ON tasker_tasks
    FOR EACH ROW
    WHEN NEW.concurrency_key IS NOT NULL AND OLD.state IN ('in_progress', 'waiting_for_retry')
        AND NEW.state NOT IN ('in_progress', 'waiting_for_retry')
BEGIN
    UPDATE tasker_task_queue SET run_at = NEW.updated_at, updated_at = NEW.updated_at
    WHERE task_id = (
            SELECT t.task_id FROM tasker_tasks t JOIN tasker_task_queue w ON w.task_id = t.task_id
            WHERE t.concurrency_key = NEW.concurrency_key AND t.completed_at IS NULL AND t.state = 'pending'
                AND w.lease_owner IS NULL AND w.run_at > NEW.updated_at
            ORDER BY t.priority DESC, t.task_id LIMIT 1)
        AND lease_owner IS NULL AND run_at > NEW.updated_at;
END;
