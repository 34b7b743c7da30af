-- Claiming looks for pending and waiting steps only. With running steps in
-- the index too, every claim of a wide task stepped over the up to
-- max_parallel_steps steps in flight before finding a claimable one, and
-- every claim wrote an index entry for the step it had just made running.
-- Without them a claim leaves the index instead of entering it. (Nothing
-- else read this index: the finalizer's summary and explain read all of a
-- task's steps through (task_id, name); the rescuer has its own lease index.)
DROP INDEX tasker_workflow_steps_active;
CREATE INDEX tasker_workflow_steps_claimable ON tasker_workflow_steps (task_id, step_id)
    WHERE state IN ('pending', 'waiting_for_retry');
