-- The dashboard's overview (internal/ui) counts tasks by state and the
-- tasks that finished in each minute of the last hour, and the failed step
-- attempts and lease rescues of the last hour. Without these indexes each
-- read whole tables: every task (context included) and every step
-- transition (several per step). (state, completed_at) answers both task
-- counts from the index alone; the partial index of failure transitions
-- holds only failed attempts (none in a healthy system), so successful
-- attempts do not touch it.
CREATE INDEX tasker_tasks_state_completed ON tasker_tasks (state, completed_at);
CREATE INDEX tasker_step_transitions_failures ON tasker_workflow_step_transitions (created_at)
    WHERE event IN ('fail_retryable', 'fail_permanent');
