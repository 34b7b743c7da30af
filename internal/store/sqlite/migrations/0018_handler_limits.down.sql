DROP TRIGGER tasker_handler_slot_wake;
DROP INDEX tasker_workflow_steps_handler_slots;
ALTER TABLE tasker_workflow_steps DROP COLUMN slot_attempt;
