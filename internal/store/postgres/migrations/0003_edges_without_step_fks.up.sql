-- Creating a task writes every edge of its DAG in one statement; a 1,000-step
-- fan-out/fan-in has about 2,000. The two foreign keys to the steps cost a
-- row lock on each referenced step per edge and doubled the time of that
-- insert. Edges are only ever written by task creation, with the step ids it
-- has just inserted in the same transaction, and they are still deleted with
-- their task (task_id keeps its ON DELETE CASCADE foreign key).
ALTER TABLE tasker_workflow_step_edges DROP CONSTRAINT tasker_workflow_step_edges_from_step_id_fkey;
ALTER TABLE tasker_workflow_step_edges DROP CONSTRAINT tasker_workflow_step_edges_to_step_id_fkey;
-- The index on from_step_id only served those foreign keys' cascades.
DROP INDEX tasker_workflow_step_edges_from;
-- Claiming takes the lowest ready step ids of a task: with step_id in the
-- partial index the scan stops after the first max_parallel_steps ready
-- steps instead of checking every unfinished step of a wide task.
DROP INDEX tasker_workflow_steps_active;
CREATE INDEX tasker_workflow_steps_active ON tasker_workflow_steps (task_id, step_id)
    WHERE state IN ('pending', 'waiting_for_retry', 'in_progress');
