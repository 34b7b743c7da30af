-- A queue record is leased (owner, expiry, attempts: no indexed column)
-- and then deleted. With full pages the lease could not be written in
-- place (a heap-only tuple) and wrote a new entry into each of the three
-- indexes; with half of each page left free it can. Single-step burn-down
-- +10 % (alternating runs). Records are short-lived, so the table stays small.
ALTER TABLE tasker_task_queue SET (fillfactor = 50);
