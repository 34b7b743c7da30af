-- Shared rate limits (internal/store/sqlcore/ratelimit.go): one token
-- bucket per limit name, times in Unix seconds. The clock parameter NULL
-- stands for the clock when the statement runs (julianday('now'), to the
-- millisecond), not when it was sent: a statement may wait for SQLite's one
-- writer. The statements are PostgreSQL's (see its ratelimit.sql) with
-- SQLite's functions; the single writer makes each atomic.

-- name: RateLimitTake
UPDATE tasker_rate_limits SET (rate, burst, tokens, updated_at, granted) = (
	SELECT $2, $3, g.avail - g.n, g.at, g.n FROM (
		SELECT a.avail, a.at, CASE WHEN a.blocked > COALESCE($5, (julianday('now') - 2440587.5) * 86400.0) THEN 0 ELSE min($4, CAST(a.avail AS INTEGER)) END AS n
		FROM (
			SELECT min(CAST($3 AS REAL), tasker_rate_limits.tokens + $2 * (max(tasker_rate_limits.updated_at, COALESCE($5, (julianday('now') - 2440587.5) * 86400.0)) - tasker_rate_limits.updated_at)) AS avail,
				max(tasker_rate_limits.updated_at, COALESCE($5, (julianday('now') - 2440587.5) * 86400.0)) AS at, COALESCE(tasker_rate_limits.blocked_until, 0) AS blocked) a) g)
WHERE name = $1
RETURNING granted, tokens, updated_at, blocked_until;

-- name: RateLimitCreate
INSERT INTO tasker_rate_limits (name, rate, burst, tokens, updated_at) VALUES ($1, $2, $3, CAST($3 AS REAL), COALESCE($4, (julianday('now') - 2440587.5) * 86400.0))
ON CONFLICT (name) DO NOTHING;

-- name: RateLimitBlock
INSERT INTO tasker_rate_limits (name, rate, burst, tokens, updated_at, blocked_until)
VALUES ($1, $2, $3, 1, COALESCE($5, (julianday('now') - 2440587.5) * 86400.0) + $4, COALESCE($5, (julianday('now') - 2440587.5) * 86400.0) + $4)
ON CONFLICT (name) DO UPDATE SET
	blocked_until = max(COALESCE(blocked_until, 0), excluded.blocked_until),
	tokens = CASE WHEN updated_at >= excluded.blocked_until THEN tokens
		ELSE min(1.0, tokens + rate * max(0.0, excluded.blocked_until - $4 - updated_at)) END,
	updated_at = max(updated_at, excluded.blocked_until)
RETURNING blocked_until;

-- name: RateLimitStates
SELECT name, rate, burst, tokens, updated_at, blocked_until, COALESCE($2, (julianday('now') - 2440587.5) * 86400.0)
FROM tasker_rate_limits WHERE name IN (SELECT value FROM json_each($1)) ORDER BY name;
