package ui

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver

	"github.com/tasker-systems/tasker/internal/redact"
	"github.com/tasker-systems/tasker/internal/store/postgres"
)

// sqliteTimeFormat is the store's fixed-width UTC text format on SQLite
// (internal/store/sqlite): comparing the text compares the times.
const sqliteTimeFormat = "2006-01-02T15:04:05.000000Z"

// db is the dashboard's read side: a connection pool of its own on the
// engine's database, for the aggregate and filtered reads the store
// interface does not offer. It never writes; every change goes through the
// tasker.Client (and so through the engine's state machine and audit rows).
type db struct {
	sql     *sql.DB
	dialect string // "postgres" or "sqlite"
}

// openDB opens the dashboard's pool on the database a tasker database URL
// names ("" is the SQLite default file tasker.db).
func openDB(ctx context.Context, url string) (*db, error) {
	var d db
	var err error
	switch {
	case strings.HasPrefix(url, "postgres://"), strings.HasPrefix(url, "postgresql://"):
		d.dialect = "postgres"
		var cfg *pgx.ConnConfig
		if cfg, err = postgresConfig(url); err == nil {
			d.sql = stdlib.OpenDB(*cfg)
			d.sql.SetMaxOpenConns(4)
			d.sql.SetMaxIdleConns(2)
			d.sql.SetConnMaxIdleTime(5 * time.Minute)
		}
	case url == "", strings.HasPrefix(url, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(url, "sqlite:"), "//")
		if path == "" {
			path = "tasker.db"
		}
		d.dialect = "sqlite"
		// Read-only connections (query_only) beside the engine's writer:
		// WAL mode lets them read while it writes.
		d.sql, err = sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=query_only(1)")
		if err == nil {
			d.sql.SetMaxOpenConns(2)
		}
	default:
		return nil, fmt.Errorf("dashboard: unsupported database URL")
	}
	if err != nil {
		return nil, fmt.Errorf("dashboard: open database: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.sql.PingContext(pctx); err != nil {
		_ = d.sql.Close()
		return nil, fmt.Errorf("dashboard: open database: %w", err)
	}
	return &d, nil
}

func (d *db) close() error { return d.sql.Close() }

// postgresConfig parses a PostgreSQL URL like the engine's store does
// (internal/store/sqlite): tasker's own pgbouncer=true parameter is taken
// out and then means no named prepared statements (pgx's cache_describe
// mode) and no startup parameters; otherwise JIT is off unless the URL
// says otherwise (the dashboard's aggregates would be compiled for tens
// of milliseconds).
func postgresConfig(url string) (*pgx.ConnConfig, error) {
	// The store's own parsing: tasker's URL parameters (pgbouncer, the
	// listen_* of a direct LISTEN connection) are not startup parameters.
	cfg, err := postgres.ConnConfig(url)
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", redact.Error(err, url))
	}
	return cfg, nil
}

// t converts a time argument for the dialect.
func (d *db) t(v time.Time) any {
	v = v.UTC().Truncate(time.Microsecond)
	if d.dialect == "sqlite" {
		return v.Format(sqliteTimeFormat)
	}
	return v
}

// minute is the SQL expression of a time column truncated to its minute:
// text "2006-01-02T15:04" on SQLite, a timestamptz on PostgreSQL (date_bin
// is much cheaper per row than formatting). Scan it with nullTime.
func (d *db) minute(col string) string {
	if d.dialect == "sqlite" {
		return "substr(" + col + ", 1, 16)"
	}
	return "date_bin('1 minute', " + col + ", timestamptz '2000-01-01 00:00:00+00')"
}

// jsonText is the SQL expression of a JSON path of a column, as text.
func (d *db) jsonText(col string, path ...string) string {
	if d.dialect == "sqlite" {
		return "json_extract(" + col + ", '$." + strings.Join(path, ".") + "')"
	}
	e := col
	for i, p := range path {
		if i == len(path)-1 {
			e += "->>'" + p + "'"
		} else {
			e += "->'" + p + "'"
		}
	}
	return e
}

// nullTime scans what either driver returns for a time column.
type nullTime struct {
	T     time.Time
	Valid bool
}

// Scan implements sql.Scanner.
func (n *nullTime) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		n.Valid = false
		return nil
	case time.Time:
		n.T, n.Valid = x.UTC(), true
		return nil
	case string:
		return n.parse(x)
	case []byte:
		return n.parse(string(x))
	}
	return fmt.Errorf("scan time: unsupported type %T", v)
}

func (n *nullTime) parse(s string) error {
	for _, layout := range []string{sqliteTimeFormat, time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02 15:04:05.999999999-07:00", "2006-01-02 15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			n.T, n.Valid = t.UTC(), true
			return nil
		}
	}
	return fmt.Errorf("scan time: cannot parse %q", s)
}

// ptr returns the time or nil.
func (n nullTime) ptr() *time.Time {
	if !n.Valid {
		return nil
	}
	t := n.T
	return &t
}

// args builds a WHERE clause with numbered placeholders.
type args struct {
	where []string
	vals  []any
}

// add appends a condition; each "?" in cond becomes the next placeholder
// bound to v.
func (a *args) add(cond string, v any) {
	a.vals = append(a.vals, v)
	a.where = append(a.where, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(a.vals))))
}

// next returns the placeholder of an extra value.
func (a *args) next(v any) string {
	a.vals = append(a.vals, v)
	return "$" + strconv.Itoa(len(a.vals))
}

func (a *args) clause() string {
	if len(a.where) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(a.where, " AND ")
}
