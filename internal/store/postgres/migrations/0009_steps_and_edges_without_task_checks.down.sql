CREATE OR REPLACE FUNCTION tasker_delete_task_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM tasker_task_transitions tr USING deleted_tasks d WHERE tr.task_id = d.task_id;
    RETURN NULL;
END;
$$;
ALTER TABLE tasker_workflow_step_edges ADD CONSTRAINT tasker_workflow_step_edges_task_id_fkey
    FOREIGN KEY (task_id) REFERENCES tasker_tasks (task_id) ON DELETE CASCADE;
ALTER TABLE tasker_workflow_steps ADD CONSTRAINT tasker_workflow_steps_task_id_fkey
    FOREIGN KEY (task_id) REFERENCES tasker_tasks (task_id) ON DELETE CASCADE;
