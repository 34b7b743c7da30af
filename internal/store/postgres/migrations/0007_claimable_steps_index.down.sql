DROP INDEX tasker_workflow_steps_claimable;
CREATE INDEX tasker_workflow_steps_active ON tasker_workflow_steps (task_id, step_id)
    WHERE state IN ('pending', 'waiting_for_retry', 'in_progress');
