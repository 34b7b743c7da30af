-- Every state change writes a transition row, so a step costs two of them
-- (claim, completion) and a single-step task four. Each insert checked a
-- foreign key (a per-row trigger that looks up and locks the step or task
-- row) and maintained three indexes. Transitions are only ever written by
-- the statement that changes the owning row's state, from the rows that
-- statement updated, so the key check can never fail; what it also gave,
-- deleting the transitions with their step or task, is kept by the
-- statement-level triggers below. The surrogate id stays (it is in the
-- API) but is no longer indexed: the natural key (owner, sort_key) becomes
-- the primary key, and a task's step transitions are found through its
-- steps instead of a task_id index of their own.
ALTER TABLE tasker_workflow_step_transitions DROP CONSTRAINT tasker_workflow_step_transitions_step_id_fkey;
ALTER TABLE tasker_workflow_step_transitions DROP CONSTRAINT tasker_workflow_step_transitions_pkey;
ALTER TABLE tasker_workflow_step_transitions ADD CONSTRAINT tasker_workflow_step_transitions_pkey
    PRIMARY KEY USING INDEX tasker_step_transitions_sort;
DROP INDEX tasker_step_transitions_task;

ALTER TABLE tasker_task_transitions DROP CONSTRAINT tasker_task_transitions_task_id_fkey;
ALTER TABLE tasker_task_transitions DROP CONSTRAINT tasker_task_transitions_pkey;
ALTER TABLE tasker_task_transitions ADD CONSTRAINT tasker_task_transitions_pkey
    PRIMARY KEY USING INDEX tasker_task_transitions_sort;

CREATE FUNCTION tasker_delete_step_transitions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM tasker_workflow_step_transitions tr USING deleted_steps d WHERE tr.step_id = d.step_id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER tasker_delete_step_transitions AFTER DELETE ON tasker_workflow_steps
    REFERENCING OLD TABLE AS deleted_steps FOR EACH STATEMENT EXECUTE FUNCTION tasker_delete_step_transitions();

-- Everything deleted with a task is deleted by this one function (0009
-- adds the steps and edges to it).
CREATE FUNCTION tasker_delete_task_rows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM tasker_task_transitions tr USING deleted_tasks d WHERE tr.task_id = d.task_id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER tasker_delete_task_rows AFTER DELETE ON tasker_tasks
    REFERENCING OLD TABLE AS deleted_tasks FOR EACH STATEMENT EXECUTE FUNCTION tasker_delete_task_rows();
