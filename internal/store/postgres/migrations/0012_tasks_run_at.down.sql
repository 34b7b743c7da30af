ALTER TABLE tasker_tasks DROP COLUMN run_at;
