-- Handler-class limits (docs/flow-control.md#handler-class-limits): see the
-- PostgreSQL migration of the same number. A step holds a slot of its class
-- while it is in_progress with slot_attempt = attempts; -1 marks a step
-- refused a slot, waiting for retry; NULL: not limited. SQLite's single
-- writer makes the admission (one UPDATE, queries/handlerlimit.sql) atomic.
ALTER TABLE tasker_workflow_steps ADD COLUMN slot_attempt INTEGER;
CREATE INDEX tasker_workflow_steps_handler_slots ON tasker_workflow_steps (handler_class, slot_attempt)
    WHERE slot_attempt IS NOT NULL AND state IN ('in_progress', 'waiting_for_retry');
-- A step that held a slot and leaves in_progress makes the oldest step of
-- its class waiting for a slot due now, with its task's queue record.
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
