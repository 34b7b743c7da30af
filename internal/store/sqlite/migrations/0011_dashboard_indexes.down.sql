DROP INDEX tasker_step_transitions_failures;
DROP INDEX tasker_tasks_completed;
DROP INDEX tasker_tasks_state;
