CREATE OR REPLACE FUNCTION tasker_tasks_concurrency_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tasker_task_queue q SET run_at = NEW.updated_at, updated_at = NEW.updated_at
    WHERE q.task_id = (
            SELECT t.task_id FROM tasker_tasks t JOIN tasker_task_queue w ON w.task_id = t.task_id
            WHERE t.concurrency_key = NEW.concurrency_key AND t.completed_at IS NULL AND t.state = 'pending'
                AND w.lease_owner IS NULL AND w.run_at > NEW.updated_at
            ORDER BY t.priority DESC, t.task_id LIMIT 1)
        AND q.lease_owner IS NULL AND q.run_at > NEW.updated_at;
    RETURN NULL;
END;
$$;
