package postgres

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
//   - does not LISTEN through PgBouncer (a notification goes to a server
//     connection, not to the client that asked): runners fall back to
//     polling every PollInterval, unless ListenHostParam, ListenPortParam
//     and, when PgBouncer's database name differs, ListenDBNameParam name
//     PostgreSQL itself, where one direct connection per process listens
//     (same user, password and other parameters as the URL).
//
// Nothing else tasker does keeps session state: its advisory lock (the
// migration lock) and its SET LOCAL are transaction-scoped.
const PgBouncerParam = "pgbouncer"

// ListenHostParam, ListenPortParam and ListenDBNameParam (database URL
// parameters, removed before connecting) send LISTEN to another host, port
// or database name than the URL's: PostgreSQL directly when the URL names
// PgBouncer.
const (
	ListenHostParam   = "listen_host"
	ListenPortParam   = "listen_port"
	ListenDBNameParam = "listen_dbname"
)

// errListenPgBouncer is Listen's answer behind PgBouncer.
var errListenPgBouncer = errors.New("LISTEN/NOTIFY is off behind PgBouncer in transaction mode (" + PgBouncerParam + "=true): polling")

// parsePostgresConfig parses a database URL or DSN for the pool and takes
// out tasker's own parameters; bouncer reports pgbouncer=true, and listen,
// when not nil, configures the direct connection for LISTEN.
func parsePostgresConfig(databaseURL string) (cfg *pgxpool.Config, bouncer bool, listen *pgxpool.Config, err error) {
	cfg, err = pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return nil, false, nil, err
	}
	params := cfg.ConnConfig.RuntimeParams
	if v, ok := params[PgBouncerParam]; ok {
		delete(params, PgBouncerParam)
		if bouncer, err = strconv.ParseBool(v); err != nil {
			return nil, false, nil, fmt.Errorf("%s=%q: want true or false", PgBouncerParam, v)
		}
	}
	host, hostSet := params[ListenHostParam]
	port, portSet := params[ListenPortParam]
	dbname, dbSet := params[ListenDBNameParam]
	delete(params, ListenHostParam)
	delete(params, ListenPortParam)
	delete(params, ListenDBNameParam)
	if hostSet || portSet || dbSet {
		listen = cfg.Copy()
		listen.ConnConfig.Fallbacks = nil
		if hostSet {
			listen.ConnConfig.Host = host
		}
		if dbSet {
			listen.ConnConfig.Database = dbname
		}
		if portSet {
			p, perr := strconv.ParseUint(port, 10, 16)
			if perr != nil || p == 0 {
				return nil, false, nil, fmt.Errorf("%s=%q: want a port number", ListenPortParam, port)
			}
			listen.ConnConfig.Port = uint16(p)
		}
		listen.MaxConns, listen.MinConns = 2, 0 // one LISTEN connection, one spare while it reconnects
		listen.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	}
	if bouncer && cfg.ConnConfig.DefaultQueryExecMode == pgx.QueryExecModeCacheStatement {
		// CacheStatement is pgx's default: a URL asking for it explicitly
		// cannot be told apart, and it would break under PgBouncer 1.18.
		cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeCacheDescribe
	}
	return cfg, bouncer, listen, nil
}

// ConnConfig parses a PostgreSQL URL the way Open does, for
// another connection to tasker's database (the dashboard's): tasker's own
// parameters (pgbouncer, listen_host, listen_port, listen_dbname) are
// removed, pgbouncer=true selects cache_describe unless the URL chose a
// mode, and JIT is turned off unless behind PgBouncer or set in the URL.
func ConnConfig(databaseURL string) (*pgx.ConnConfig, error) {
	cfg, bouncer, _, err := parsePostgresConfig(databaseURL)
	if err != nil {
		return nil, err
	}
	cc := cfg.ConnConfig
	if _, ok := cc.RuntimeParams["jit"]; !ok && !bouncer {
		cc.RuntimeParams["jit"] = "off"
	}
	return cc, nil
}
