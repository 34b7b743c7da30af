ALTER TABLE tasker_tasks RESET (fillfactor);
DROP INDEX tasker_tasks_unfinished;
CREATE INDEX tasker_tasks_active ON tasker_tasks (state) WHERE state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually');
