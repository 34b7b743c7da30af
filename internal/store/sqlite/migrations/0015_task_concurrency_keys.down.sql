DROP TRIGGER tasker_tasks_concurrency_wake;
DROP INDEX tasker_tasks_concurrency;
ALTER TABLE tasker_tasks DROP COLUMN concurrency_policy;
ALTER TABLE tasker_tasks DROP COLUMN concurrency_limit;
ALTER TABLE tasker_tasks DROP COLUMN concurrency_key;
