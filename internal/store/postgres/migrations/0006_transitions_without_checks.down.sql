DROP TRIGGER tasker_delete_task_rows ON tasker_tasks;
DROP FUNCTION tasker_delete_task_rows();
DROP TRIGGER tasker_delete_step_transitions ON tasker_workflow_steps;
DROP FUNCTION tasker_delete_step_transitions();

ALTER TABLE tasker_task_transitions DROP CONSTRAINT tasker_task_transitions_pkey;
CREATE UNIQUE INDEX tasker_task_transitions_sort ON tasker_task_transitions (task_id, sort_key);
ALTER TABLE tasker_task_transitions ADD PRIMARY KEY (id);
ALTER TABLE tasker_task_transitions ADD CONSTRAINT tasker_task_transitions_task_id_fkey
    FOREIGN KEY (task_id) REFERENCES tasker_tasks (task_id) ON DELETE CASCADE;

CREATE INDEX tasker_step_transitions_task ON tasker_workflow_step_transitions (task_id);
ALTER TABLE tasker_workflow_step_transitions DROP CONSTRAINT tasker_workflow_step_transitions_pkey;
CREATE UNIQUE INDEX tasker_step_transitions_sort ON tasker_workflow_step_transitions (step_id, sort_key);
ALTER TABLE tasker_workflow_step_transitions ADD PRIMARY KEY (id);
ALTER TABLE tasker_workflow_step_transitions ADD CONSTRAINT tasker_workflow_step_transitions_step_id_fkey
    FOREIGN KEY (step_id) REFERENCES tasker_workflow_steps (step_id) ON DELETE CASCADE;
