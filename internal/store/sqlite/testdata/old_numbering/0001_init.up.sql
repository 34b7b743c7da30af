CREATE TABLE tasker_namespaces (
    namespace_id INTEGER PRIMARY KEY AUTOINCREMENT,
    name         text NOT NULL UNIQUE,
    created_at   TIMESTAMP NOT NULL
);

CREATE TABLE tasker_named_tasks (
    named_task_id INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace_id  INTEGER NOT NULL REFERENCES tasker_namespaces (namespace_id),
    name          text NOT NULL,
    version       text NOT NULL,
    description   text NOT NULL DEFAULT '',
    template      TEXT,
    created_at    TIMESTAMP NOT NULL,
    UNIQUE (namespace_id, name, version)
);

CREATE TABLE tasker_named_steps (
    named_step_id INTEGER PRIMARY KEY AUTOINCREMENT,
    named_task_id INTEGER NOT NULL REFERENCES tasker_named_tasks (named_task_id),
    name          text NOT NULL,
    handler_class text NOT NULL,
    UNIQUE (named_task_id, name)
);

CREATE TABLE tasker_tasks (
    task_id            INTEGER PRIMARY KEY AUTOINCREMENT,
    named_task_id      INTEGER NOT NULL REFERENCES tasker_named_tasks (named_task_id),
    namespace          text NOT NULL,
    name               text NOT NULL,
    version            text NOT NULL,
    state              text NOT NULL,
    previous_state     text,
    transition_seq     integer NOT NULL DEFAULT 0,
    context            TEXT NOT NULL,
    initiator          text NOT NULL DEFAULT '',
    source_system      text NOT NULL DEFAULT '',
    reason             text NOT NULL DEFAULT '',
    tags               TEXT NOT NULL DEFAULT '[]',
    priority           integer NOT NULL DEFAULT 0,
    idempotency_key    text,
    max_parallel_steps integer NOT NULL,
    created_at         TIMESTAMP NOT NULL,
    updated_at         TIMESTAMP NOT NULL,
    completed_at       TIMESTAMP
);
CREATE UNIQUE INDEX tasker_tasks_idempotency_key ON tasker_tasks (idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX tasker_tasks_active ON tasker_tasks (state) WHERE state NOT IN ('complete', 'error', 'cancelled', 'resolved_manually');
CREATE INDEX tasker_tasks_created ON tasker_tasks (created_at);
CREATE INDEX tasker_tasks_ns_name ON tasker_tasks (namespace, name, task_id);

CREATE TABLE tasker_workflow_steps (
    step_id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id                 INTEGER NOT NULL REFERENCES tasker_tasks (task_id) ON DELETE CASCADE,
    named_step_id           INTEGER NOT NULL REFERENCES tasker_named_steps (named_step_id),
    name                    text NOT NULL,
    handler_class           text NOT NULL,
    handler_config          TEXT,
    state                   text NOT NULL,
    previous_state          text,
    transition_seq          integer NOT NULL DEFAULT 0,
    retryable               BOOLEAN NOT NULL,
    attempts                integer NOT NULL DEFAULT 0,
    max_attempts            integer NOT NULL,
    timeout_seconds         integer NOT NULL DEFAULT 0,
    skippable               BOOLEAN NOT NULL DEFAULT false,
    inputs                  TEXT,
    results                 TEXT,
    error                   TEXT,
    backoff_request_seconds integer,
    last_attempted_at       TIMESTAMP,
    next_retry_at           TIMESTAMP,
    lease_owner             text,
    lease_expires_at        TIMESTAMP,
    created_at              TIMESTAMP NOT NULL,
    updated_at              TIMESTAMP NOT NULL,
    completed_at            TIMESTAMP,
    UNIQUE (task_id, name)
);
-- Readiness and claiming only look at unfinished steps of a task.
CREATE INDEX tasker_workflow_steps_active ON tasker_workflow_steps (task_id)
    WHERE state IN ('pending', 'waiting_for_retry', 'in_progress');
-- The rescuer looks for expired leases among running steps only.
CREATE INDEX tasker_workflow_steps_lease ON tasker_workflow_steps (lease_expires_at)
    WHERE state = 'in_progress';

CREATE TABLE tasker_workflow_step_edges (
    task_id      INTEGER NOT NULL REFERENCES tasker_tasks (task_id) ON DELETE CASCADE,
    from_step_id INTEGER NOT NULL REFERENCES tasker_workflow_steps (step_id) ON DELETE CASCADE,
    to_step_id   INTEGER NOT NULL REFERENCES tasker_workflow_steps (step_id) ON DELETE CASCADE,
    name         text NOT NULL DEFAULT 'provides',
    PRIMARY KEY (to_step_id, from_step_id)
);
CREATE INDEX tasker_workflow_step_edges_task ON tasker_workflow_step_edges (task_id);
CREATE INDEX tasker_workflow_step_edges_from ON tasker_workflow_step_edges (from_step_id);

CREATE TABLE tasker_task_transitions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id     INTEGER NOT NULL REFERENCES tasker_tasks (task_id) ON DELETE CASCADE,
    from_state  text,
    to_state    text NOT NULL,
    event       text NOT NULL,
    reason      text NOT NULL DEFAULT '',
    actor       text NOT NULL DEFAULT '',
    metadata    TEXT,
    sort_key    integer NOT NULL,
    most_recent BOOLEAN NOT NULL,
    created_at  TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX tasker_task_transitions_sort ON tasker_task_transitions (task_id, sort_key);
CREATE UNIQUE INDEX tasker_task_transitions_most_recent ON tasker_task_transitions (task_id) WHERE most_recent;

CREATE TABLE tasker_workflow_step_transitions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    step_id     INTEGER NOT NULL REFERENCES tasker_workflow_steps (step_id) ON DELETE CASCADE,
    task_id     INTEGER NOT NULL,
    from_state  text,
    to_state    text NOT NULL,
    event       text NOT NULL,
    reason      text NOT NULL DEFAULT '',
    actor       text NOT NULL DEFAULT '',
    metadata    TEXT,
    sort_key    integer NOT NULL,
    most_recent BOOLEAN NOT NULL,
    created_at  TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX tasker_step_transitions_sort ON tasker_workflow_step_transitions (step_id, sort_key);
CREATE UNIQUE INDEX tasker_step_transitions_most_recent ON tasker_workflow_step_transitions (step_id) WHERE most_recent;
CREATE INDEX tasker_step_transitions_task ON tasker_workflow_step_transitions (task_id);

-- The durable enqueue record: at most one per task. Runners claim due,
-- unleased (or lease-expired) rows; the event-based enqueuer republishes them.
CREATE TABLE tasker_task_queue (
    task_id          INTEGER PRIMARY KEY REFERENCES tasker_tasks (task_id) ON DELETE CASCADE,
    operation        text NOT NULL,
    run_at           TIMESTAMP NOT NULL,
    priority         integer NOT NULL DEFAULT 0,
    attempts         integer NOT NULL DEFAULT 0,
    reason           text NOT NULL DEFAULT '',
    lease_owner      text,
    lease_expires_at TIMESTAMP,
    created_at       TIMESTAMP NOT NULL,
    updated_at       TIMESTAMP NOT NULL
);
CREATE INDEX tasker_task_queue_due ON tasker_task_queue (run_at);

