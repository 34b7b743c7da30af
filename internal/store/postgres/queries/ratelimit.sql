-- Shared rate limits (internal/store/sqlcore/ratelimit.go): one token
-- bucket per limit name. $5 (Unix seconds) stands for the clock and NULL
-- for the server's (statement_timestamp()), the one every runner shares.

-- name: RateLimitTake
-- Takes up to $4 tokens of limit $1 (rate $2 per second, burst $3, which
-- also replace the row's: the caller's template is the definition in
-- force). The bucket is refilled from updated_at to the clock (never
-- backwards: a bucket blocked by a Retry-After refills from the block's
-- end), then as many whole tokens as it holds are granted, none while
-- blocked_until is ahead. The row lock serializes takes across runners;
-- the expressions read the row after the lock (a correlated subquery is
-- re-evaluated for the row version the update applies to).
UPDATE tasker_rate_limits r SET (rate, burst, tokens, updated_at, granted) = (
	SELECT $2::float8, $3::integer, g.avail - g.n, g.at, g.n FROM (
		SELECT a.avail, a.at, CASE WHEN a.blocked > a.now THEN 0 ELSE LEAST($4::integer, floor(a.avail)::integer) END AS n
		FROM (
			SELECT LEAST($3::float8, r.tokens + $2::float8 * extract(epoch FROM GREATEST(r.updated_at, c.now) - r.updated_at)::float8) AS avail,
				GREATEST(r.updated_at, c.now) AS at, COALESCE(r.blocked_until, '-infinity') AS blocked, c.now
			FROM (SELECT COALESCE(to_timestamp($5::float8), statement_timestamp()) AS now) c) a) g)
WHERE r.name = $1
RETURNING r.granted, r.tokens, extract(epoch FROM r.updated_at)::float8, extract(epoch FROM r.blocked_until)::float8;

-- name: RateLimitCreate
-- Creates limit $1's bucket full ($3 tokens) when it does not exist yet.
INSERT INTO tasker_rate_limits (name, rate, burst, tokens, updated_at)
VALUES ($1, $2::float8, $3::integer, $3::float8, COALESCE(to_timestamp($4::float8), statement_timestamp()))
ON CONFLICT (name) DO NOTHING;

-- name: RateLimitBlock
-- Blocks limit $1 for $4 seconds from the clock ($5): blocked_until becomes
-- the later of its value and that time, and the bucket then resumes with
-- what it holds now, at most one token: it is not refilled during the
-- block (the server asked for a pause, not for a burst at its end), and a
-- block never adds a token (starts just before it and just after it stay
-- within burst + rate x window). It returns blocked_until.
INSERT INTO tasker_rate_limits AS r (name, rate, burst, tokens, updated_at, blocked_until)
SELECT $1, $2::float8, $3::integer, 1, u.until, u.until
FROM (SELECT COALESCE(to_timestamp($5::float8), statement_timestamp()) + make_interval(secs => $4::float8) AS until) u
ON CONFLICT (name) DO UPDATE SET
	blocked_until = GREATEST(r.blocked_until, EXCLUDED.blocked_until),
	tokens = CASE WHEN r.updated_at >= EXCLUDED.blocked_until THEN r.tokens
		ELSE LEAST(1, r.tokens + r.rate * GREATEST(0, extract(epoch FROM
			EXCLUDED.blocked_until - make_interval(secs => $4::float8) - r.updated_at)::float8)) END,
	updated_at = GREATEST(r.updated_at, EXCLUDED.blocked_until)
RETURNING extract(epoch FROM r.blocked_until)::float8;

-- name: RateLimitStates
-- The buckets of the limits named in $1 (those that exist), with the
-- clock ($2, NULL: the server's) they are read at.
SELECT name, rate, burst, tokens, extract(epoch FROM updated_at)::float8, extract(epoch FROM blocked_until)::float8,
	extract(epoch FROM COALESCE(to_timestamp($2::float8), statement_timestamp()))::float8
FROM tasker_rate_limits WHERE name = ANY($1::text[]) ORDER BY name;
