-- Shared rate limits (a template's rate_limits, a step's rate_limit): one
-- token bucket per limit name, shared by every task and runner. tokens is
-- what the bucket held at updated_at (it refills at rate per second up to
-- burst); blocked_until is set by a server's Retry-After on any step of the
-- limit (no step of it starts before then); granted is how many tokens the
-- last take handed out (RETURNING sees only the new row). Times are the
-- database's clock.
CREATE TABLE tasker_rate_limits (
    name          text PRIMARY KEY,
    rate          double precision NOT NULL,
    burst         integer NOT NULL,
    tokens        double precision NOT NULL,
    updated_at    timestamptz NOT NULL,
    blocked_until timestamptz,
    granted       integer NOT NULL DEFAULT 0
);
