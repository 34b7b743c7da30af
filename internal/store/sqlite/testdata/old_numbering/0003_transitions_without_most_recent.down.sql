ALTER TABLE tasker_task_transitions ADD COLUMN most_recent BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE tasker_workflow_step_transitions ADD COLUMN most_recent BOOLEAN NOT NULL DEFAULT 0;
UPDATE tasker_task_transitions SET most_recent = 1 WHERE sort_key =
    (SELECT t.transition_seq FROM tasker_tasks t WHERE t.task_id = tasker_task_transitions.task_id);
UPDATE tasker_workflow_step_transitions SET most_recent = 1 WHERE sort_key =
    (SELECT s.transition_seq FROM tasker_workflow_steps s WHERE s.step_id = tasker_workflow_step_transitions.step_id);
CREATE UNIQUE INDEX tasker_task_transitions_most_recent ON tasker_task_transitions (task_id) WHERE most_recent;
CREATE UNIQUE INDEX tasker_step_transitions_most_recent ON tasker_workflow_step_transitions (step_id) WHERE most_recent;
