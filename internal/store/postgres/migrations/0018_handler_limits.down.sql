DROP TRIGGER tasker_handler_slot_wake ON tasker_workflow_steps;
DROP FUNCTION tasker_handler_slot_wake();
DROP FUNCTION tasker_handler_admit(text, integer, text, bigint[]);
DROP INDEX tasker_workflow_steps_handler_slots;
ALTER TABLE tasker_workflow_steps DROP COLUMN slot_attempt;
