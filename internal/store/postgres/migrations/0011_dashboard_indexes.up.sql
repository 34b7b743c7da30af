-- The dashboard's overview (internal/ui) counts the tasks that finished in
-- each minute of the last hour, and the failed step attempts and lease
-- rescues of the last hour. Without these indexes both read whole tables
-- (every task; every step transition, several per step). A task's
-- completed_at is set when it finishes, by an update that already changes
-- an indexed column (the predicate of 0010's index of unfinished tasks), so
-- this index adds one entry per finished task and makes no start non-HOT.
-- (State is deliberately in no index: that would make every start non-HOT,
-- see 0010; counting tasks by state reads the table.) The partial index of
-- failure transitions holds only failed attempts (none in a healthy
-- system): successful attempts do not touch it.
CREATE INDEX tasker_tasks_completed ON tasker_tasks (completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX tasker_step_transitions_failures ON tasker_workflow_step_transitions (created_at)
    WHERE event IN ('fail_retryable', 'fail_permanent');
