-- The queue in the task row (issue 18 item 3): see the PostgreSQL migration
-- of the same number. A task's enqueue record moves from tasker_task_queue
-- into queue_* columns of the task (queue_run_at NULL: no record); a view
-- keeps the old table's name and columns for reading.
ALTER TABLE tasker_tasks ADD COLUMN queue_operation text;
ALTER TABLE tasker_tasks ADD COLUMN queue_run_at TIMESTAMP;
ALTER TABLE tasker_tasks ADD COLUMN queue_priority integer;
ALTER TABLE tasker_tasks ADD COLUMN queue_attempts integer;
ALTER TABLE tasker_tasks ADD COLUMN queue_reason text;
ALTER TABLE tasker_tasks ADD COLUMN queue_lease_owner text;
ALTER TABLE tasker_tasks ADD COLUMN queue_lease_expires_at TIMESTAMP;
ALTER TABLE tasker_tasks ADD COLUMN queue_created_at TIMESTAMP;
ALTER TABLE tasker_tasks ADD COLUMN queue_updated_at TIMESTAMP;

UPDATE tasker_tasks SET (queue_operation, queue_run_at, queue_priority, queue_attempts, queue_reason, queue_lease_owner,
        queue_lease_expires_at, queue_created_at, queue_updated_at) = (
    SELECT q.operation, q.run_at, q.priority, q.attempts, q.reason, q.lease_owner, q.lease_expires_at, q.created_at,
        q.updated_at
    FROM tasker_task_queue q WHERE q.task_id = tasker_tasks.task_id)
WHERE task_id IN (SELECT task_id FROM tasker_task_queue);

DROP TRIGGER tasker_tasks_concurrency_wake;
DROP TRIGGER tasker_handler_slot_wake;
DROP TABLE tasker_task_queue;

CREATE INDEX tasker_tasks_queue_claim ON tasker_tasks (queue_priority DESC, queue_run_at) WHERE queue_run_at IS NOT NULL;
CREATE INDEX tasker_tasks_queue_due ON tasker_tasks (queue_run_at) WHERE queue_run_at IS NOT NULL;

CREATE VIEW tasker_task_queue AS
SELECT task_id, queue_operation AS operation, queue_run_at AS run_at, queue_priority AS priority,
    queue_attempts AS attempts, queue_reason AS reason, queue_lease_owner AS lease_owner,
    queue_lease_expires_at AS lease_expires_at, queue_created_at AS created_at, queue_updated_at AS updated_at
FROM tasker_tasks WHERE queue_run_at IS NOT NULL;
-- Statements written for the table keep working through the view: an
-- insert or update writes the task's record, a delete clears it (never the
-- task). Migrations written against the table (0022 recreates the wake
-- triggers with it) run unchanged.
CREATE TRIGGER tasker_task_queue_insert INSTEAD OF INSERT ON tasker_task_queue
BEGIN
    UPDATE tasker_tasks SET queue_operation = NEW.operation, queue_run_at = NEW.run_at,
        queue_priority = COALESCE(NEW.priority, 0), queue_attempts = COALESCE(NEW.attempts, 0),
        queue_reason = COALESCE(NEW.reason, ''), queue_lease_owner = NEW.lease_owner,
        queue_lease_expires_at = NEW.lease_expires_at, queue_created_at = NEW.created_at,
        queue_updated_at = NEW.updated_at
    WHERE task_id = NEW.task_id;
END;
CREATE TRIGGER tasker_task_queue_update INSTEAD OF UPDATE ON tasker_task_queue
BEGIN
    UPDATE tasker_tasks SET queue_operation = NEW.operation, queue_run_at = NEW.run_at, queue_priority = NEW.priority,
        queue_attempts = NEW.attempts, queue_reason = NEW.reason, queue_lease_owner = NEW.lease_owner,
        queue_lease_expires_at = NEW.lease_expires_at, queue_created_at = NEW.created_at,
        queue_updated_at = NEW.updated_at
    WHERE task_id = OLD.task_id;
END;
CREATE TRIGGER tasker_task_queue_delete INSTEAD OF DELETE ON tasker_task_queue
BEGIN
    UPDATE tasker_tasks SET queue_operation = NULL, queue_run_at = NULL, queue_priority = NULL, queue_attempts = NULL,
        queue_reason = NULL, queue_lease_owner = NULL, queue_lease_expires_at = NULL, queue_created_at = NULL,
        queue_updated_at = NULL WHERE task_id = OLD.task_id;
END;

-- The wakes of 0018 and 0020 (with the planner hints of 0022), on the task
-- row's record.
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
