DROP INDEX tasker_tasks_keep_until;
ALTER TABLE tasker_tasks DROP COLUMN keep_until;
ALTER TABLE tasker_tasks DROP COLUMN retention_failed_seconds;
ALTER TABLE tasker_tasks DROP COLUMN retention_seconds;
