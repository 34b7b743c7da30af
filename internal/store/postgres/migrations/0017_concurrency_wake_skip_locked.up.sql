-- Concurrency keys: the wake of a parked task (0015) no longer gets lost
-- when two tasks of a key stop running at once. Two finishes in one
-- transaction (a record batch finalizes many tasks in one statement) woke
-- the same parked task when the second finish's time was earlier than the
-- first's: the record the first had made due at its time still counted as
-- parked (run_at after the second's time), so the second woke nobody new.
-- Two finishes in two transactions chose the same oldest parked task from
-- their snapshots; the second one's update then waited for the first's,
-- found the record due and woke nobody. A slot stayed free until the
-- parked tasks' 5-minute recheck. Now a woken record (run_at equal to its
-- updated_at: the wake sets both) is never a candidate, and the candidate
-- is locked with SKIP LOCKED: a record another wake is making due is
-- passed over for the next parked task of the key.
CREATE OR REPLACE FUNCTION tasker_tasks_concurrency_wake() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tasker_task_queue q SET run_at = NEW.updated_at, updated_at = NEW.updated_at
    WHERE q.task_id = (
            SELECT w.task_id FROM tasker_tasks t JOIN tasker_task_queue w ON w.task_id = t.task_id
            WHERE t.concurrency_key = NEW.concurrency_key AND t.completed_at IS NULL AND t.state = 'pending'
                AND w.lease_owner IS NULL AND w.run_at > NEW.updated_at AND w.run_at > w.updated_at
            ORDER BY t.priority DESC, t.task_id LIMIT 1
            FOR UPDATE OF w SKIP LOCKED)
        AND q.lease_owner IS NULL AND q.run_at > NEW.updated_at AND q.run_at > q.updated_at;
    RETURN NULL;
END;
$$;
