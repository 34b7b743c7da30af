CREATE INDEX tasker_workflow_step_edges_from ON tasker_workflow_step_edges (from_step_id);
ALTER TABLE tasker_workflow_step_edges ADD CONSTRAINT tasker_workflow_step_edges_from_step_id_fkey
    FOREIGN KEY (from_step_id) REFERENCES tasker_workflow_steps (step_id) ON DELETE CASCADE;
ALTER TABLE tasker_workflow_step_edges ADD CONSTRAINT tasker_workflow_step_edges_to_step_id_fkey
    FOREIGN KEY (to_step_id) REFERENCES tasker_workflow_steps (step_id) ON DELETE CASCADE;
DROP INDEX tasker_workflow_steps_active;
CREATE INDEX tasker_workflow_steps_active ON tasker_workflow_steps (task_id)
    WHERE state IN ('pending', 'waiting_for_retry', 'in_progress');
