-- Dynamic fan-out (store.FanOutStore): the expansion of a placeholder
-- step into one child step per item, in one transaction.

-- name: StepFanOutRelease
-- Gives placeholder $1 of task $2 back (pending, its attempt undone, its
-- lease dropped) when it is still in progress under owner $3's lease for
-- attempt $4, at $5; returns its named step (the children's) and its new
-- transition_seq. No row: no longer held, nothing is expanded.
UPDATE tasker_workflow_steps SET state = 'pending', previous_state = state, transition_seq = transition_seq + 1,
	attempts = attempts - 1, lease_owner = NULL, lease_expires_at = NULL, updated_at = $5
WHERE step_id = $1 AND task_id = $2 AND state = 'in_progress' AND lease_owner = $3 AND attempts = $4
RETURNING named_step_id, transition_seq;

-- name: StepFanOutParents
-- The ids of the parents of step $1 (each child of its expansion gets them).
SELECT e.from_step_id FROM tasker_workflow_step_edges e WHERE e.to_step_id = $1 ORDER BY e.from_step_id;
