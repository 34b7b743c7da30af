package sqlstore

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PgBouncerParam is the database URL parameter (postgres://...?pgbouncer=true,
// or pgbouncer=true in a keyword/value DSN) that tells tasker it talks to
// PostgreSQL through PgBouncer in transaction pooling mode. Tasker removes
// it before connecting and then:
//
//   - sends statements without named prepared statements, unless the URL
//     chose a default_query_exec_mode itself: PgBouncer before 1.21
//     (Debian bookworm ships 1.18) cannot keep a prepared statement across
//     transactions, which land on any server connection. The mode is pgx's
//     QueryExecModeCacheDescribe: a statement's parameter and result types
//     are asked once per connection (Parse and Describe of the unnamed
//     statement), and every execution then parses, binds and executes
//     the unnamed statement in one message sequence, so it cannot be split
//     across server connections. (The exec and simple_protocol modes
//     send tasker's JSON parameters as bytea, which PostgreSQL refuses,
//     and describe_exec splits the describe and the execution across two
//     syncs, which transaction pooling may send to different servers: the
//     suite's pgbouncer test fails with each of them.) After a migration
//     that changes the types of columns tasker reads, restart the
//     processes so the cached descriptions are dropped;
//   - sends no jit startup parameter (PgBouncer refuses startup
//     parameters it does not know); turn JIT off for the role instead
//     (ALTER ROLE tasker SET jit = off);
//   - does not LISTEN (a notification goes to a server connection, not to
//     the client that asked): runners fall back to polling every
//     PollInterval.
//
// Nothing else tasker does keeps session state: its advisory lock (the
// migration lock) and its SET LOCAL are transaction-scoped.
const PgBouncerParam = "pgbouncer"

// errListenPgBouncer is Listen's answer behind PgBouncer.
var errListenPgBouncer = errors.New("LISTEN/NOTIFY is off behind PgBouncer in transaction mode (" + PgBouncerParam + "=true): polling")

// parsePostgresConfig parses a database URL or DSN for the pool and takes
// out tasker's own parameter; bouncer reports pgbouncer=true.
func parsePostgresConfig(databaseURL string) (cfg *pgxpool.Config, bouncer bool, err error) {
	cfg, err = pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, false, err
	}
	params := cfg.ConnConfig.RuntimeParams
	if v, ok := params[PgBouncerParam]; ok {
		delete(params, PgBouncerParam)
		if bouncer, err = strconv.ParseBool(v); err != nil {
			return nil, false, fmt.Errorf("%s=%q: want true or false", PgBouncerParam, v)
		}
	}
	if bouncer && cfg.ConnConfig.DefaultQueryExecMode == pgx.QueryExecModeCacheStatement {
		// CacheStatement is pgx's default: a URL asking for it explicitly
		// cannot be told apart, and it would break under PgBouncer 1.18.
		cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
	}
	return cfg, bouncer, nil
}
