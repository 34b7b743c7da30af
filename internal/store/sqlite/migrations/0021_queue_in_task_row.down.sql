-- The queue back in its own table (0001, 0005), the wakes as 0018 and
-- 0020 defined them.
DROP TRIGGER tasker_handler_slot_wake;
DROP TRIGGER tasker_tasks_concurrency_wake;
DROP VIEW tasker_task_queue;
CREATE TABLE tasker_task_queue (
    task_id          INTEGER PRIMARY KEY REFERENCES tasker_tasks (task_id) ON DELETE CASCADE,
    operation        text NOT NULL,
    run_at           TIMESTAMP NOT NULL,
    priority         integer NOT NULL DEFAULT 0,
    attempts         integer NOT NULL DEFAULT 0,
    reason           text NOT NULL DEFAULT '',
    lease_owner      text,
    lease_expires_at TIMESTAMP,
    created_at       TIMESTAMP NOT NULL,
    updated_at       TIMESTAMP NOT NULL
);
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
ALTER TABLE tasker_tasks DROP COLUMN queue_operation;
ALTER TABLE tasker_tasks DROP COLUMN queue_run_at;
ALTER TABLE tasker_tasks DROP COLUMN queue_priority;
ALTER TABLE tasker_tasks DROP COLUMN queue_attempts;
ALTER TABLE tasker_tasks DROP COLUMN queue_reason;
ALTER TABLE tasker_tasks DROP COLUMN queue_lease_owner;
ALTER TABLE tasker_tasks DROP COLUMN queue_lease_expires_at;
ALTER TABLE tasker_tasks DROP COLUMN queue_created_at;
ALTER TABLE tasker_tasks DROP COLUMN queue_updated_at;

CREATE TRIGGER tasker_tasks_concurrency_wake AFTER UPDATE OF state ON tasker_tasks
    FOR EACH ROW
    WHEN NEW.concurrency_key IS NOT NULL AND OLD.state IN ('in_progress', 'waiting_for_retry')
        AND NEW.state NOT IN ('in_progress', 'waiting_for_retry')
BEGIN
    UPDATE tasker_task_queue SET run_at = NEW.updated_at, updated_at = NEW.updated_at
    WHERE task_id = (
            SELECT t.task_id FROM tasker_tasks t JOIN tasker_task_queue w ON w.task_id = t.task_id
            WHERE t.concurrency_key = NEW.concurrency_key AND t.completed_at IS NULL AND t.state = 'pending'
                AND (t.run_at IS NULL OR t.run_at <= NEW.updated_at)
                AND w.lease_owner IS NULL AND w.run_at > NEW.updated_at
            ORDER BY t.priority DESC, t.task_id LIMIT 1)
        AND lease_owner IS NULL AND run_at > NEW.updated_at;
END;

CREATE TRIGGER tasker_handler_slot_wake AFTER UPDATE OF state ON tasker_workflow_steps
    FOR EACH ROW
    WHEN OLD.slot_attempt > 0 AND OLD.state = 'in_progress' AND NEW.state <> 'in_progress'
        AND OLD.slot_attempt = OLD.attempts
BEGIN
    UPDATE tasker_task_queue SET run_at = NEW.updated_at, updated_at = NEW.updated_at
    WHERE task_id = (
            SELECT s.task_id FROM tasker_workflow_steps s
            WHERE s.handler_class = NEW.handler_class AND s.slot_attempt = -1 AND s.state = 'waiting_for_retry'
                AND s.next_retry_at > NEW.updated_at
            ORDER BY s.next_retry_at, s.step_id LIMIT 1)
        AND lease_owner IS NULL AND run_at > NEW.updated_at;
    UPDATE tasker_workflow_steps SET next_retry_at = NEW.updated_at
    WHERE step_id = (
            SELECT s.step_id FROM tasker_workflow_steps s
            WHERE s.handler_class = NEW.handler_class AND s.slot_attempt = -1 AND s.state = 'waiting_for_retry'
                AND s.next_retry_at > NEW.updated_at
            ORDER BY s.next_retry_at, s.step_id LIMIT 1);
END;
