DROP TRIGGER tasker_delete_task_steps ON tasker_tasks;
DROP FUNCTION tasker_delete_task_steps();
ALTER TABLE tasker_workflow_step_edges ADD CONSTRAINT tasker_workflow_step_edges_task_id_fkey
    FOREIGN KEY (task_id) REFERENCES tasker_tasks (task_id) ON DELETE CASCADE;
ALTER TABLE tasker_workflow_steps ADD CONSTRAINT tasker_workflow_steps_task_id_fkey
    FOREIGN KEY (task_id) REFERENCES tasker_tasks (task_id) ON DELETE CASCADE;
