-- The dashboard (internal/ui) counts tasks by state, lists them by state
-- newest first, and counts the tasks that finished in each minute of the
-- last hour and the failed step attempts and lease rescues of the last
-- hour. Without these indexes each of those read whole tables: every task
-- (context included) and every step transition (several per step). The
-- state index answers the counts from the index alone and a state filter
-- in task_id order (the rowid rides along); (completed_at, state) answers
-- the per-minute counts from the index alone. The partial index of failure
-- transitions holds only failed attempts (none in a healthy system), so
-- successful attempts do not touch it.
CREATE INDEX tasker_tasks_state ON tasker_tasks (state);
CREATE INDEX tasker_tasks_completed ON tasker_tasks (completed_at, state) WHERE completed_at IS NOT NULL;
CREATE INDEX tasker_step_transitions_failures ON tasker_workflow_step_transitions (created_at)
    WHERE event IN ('fail_retryable', 'fail_permanent');
