-- Shared rate limits: one token bucket per limit name (see PostgreSQL's
-- 0016). Times are Unix seconds (REAL) of the process's clock: SQLite has
-- one process, and the bucket's arithmetic is done in SQL on numbers.
CREATE TABLE tasker_rate_limits (
    name          TEXT PRIMARY KEY,
    rate          REAL NOT NULL,
    burst         INTEGER NOT NULL,
    tokens        REAL NOT NULL,
    updated_at    REAL NOT NULL,
    blocked_until REAL,
    granted       INTEGER NOT NULL DEFAULT 0
);
