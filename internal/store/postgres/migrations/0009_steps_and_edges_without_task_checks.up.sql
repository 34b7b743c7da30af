-- Creating a task writes its steps and edges with COPY; each row's foreign
-- key to the task was a per-row trigger (a lookup and a share lock of the
-- one task row): 3,000 of them for a 1,000-step fan-out/fan-in, a third of
-- the time to create it. Steps and edges are only ever inserted by task
-- creation, in the transaction that inserts their task, so the check
-- cannot fail; deleting them with their task is kept by 0006's statement
-- trigger on tasks, whose function now deletes them too (and deleting the
-- steps fires 0006's trigger for their transitions). The queue keeps its
-- key: one row per task.
ALTER TABLE tasker_workflow_steps DROP CONSTRAINT tasker_workflow_steps_task_id_fkey;
ALTER TABLE tasker_workflow_step_edges DROP CONSTRAINT tasker_workflow_step_edges_task_id_fkey;

CREATE OR REPLACE FUNCTION tasker_delete_task_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM tasker_task_transitions tr USING deleted_tasks d WHERE tr.task_id = d.task_id;
    DELETE FROM tasker_workflow_step_edges e USING deleted_tasks d WHERE e.task_id = d.task_id;
    DELETE FROM tasker_workflow_steps s USING deleted_tasks d WHERE s.task_id = d.task_id;
    RETURN NULL;
END;
$$;
