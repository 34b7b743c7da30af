-- The current transition of a task or step is the one whose sort_key equals
-- the row's transition_seq; readers derive most_recent from that. Keeping a
-- most_recent flag meant every state change also rewrote the superseded
-- transition row (a non-HOT update through three indexes), which was a
-- third of the cost of recording a batch of step results.
DROP INDEX tasker_task_transitions_most_recent;
DROP INDEX tasker_step_transitions_most_recent;
ALTER TABLE tasker_task_transitions DROP COLUMN most_recent;
ALTER TABLE tasker_workflow_step_transitions DROP COLUMN most_recent;
