ALTER TABLE tasker_task_transitions ADD COLUMN most_recent boolean NOT NULL DEFAULT false;
ALTER TABLE tasker_workflow_step_transitions ADD COLUMN most_recent boolean NOT NULL DEFAULT false;
UPDATE tasker_task_transitions tr SET most_recent = true FROM tasker_tasks t
    WHERE t.task_id = tr.task_id AND tr.sort_key = t.transition_seq;
UPDATE tasker_workflow_step_transitions tr SET most_recent = true FROM tasker_workflow_steps s
    WHERE s.step_id = tr.step_id AND tr.sort_key = s.transition_seq;
ALTER TABLE tasker_task_transitions ALTER COLUMN most_recent DROP DEFAULT;
ALTER TABLE tasker_workflow_step_transitions ALTER COLUMN most_recent DROP DEFAULT;
CREATE UNIQUE INDEX tasker_task_transitions_most_recent ON tasker_task_transitions (task_id) WHERE most_recent;
CREATE UNIQUE INDEX tasker_step_transitions_most_recent ON tasker_workflow_step_transitions (step_id) WHERE most_recent;
