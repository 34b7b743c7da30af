package sqlstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tasker-systems/tasker/internal/store"
)

//go:embed migrations/*/*.sql
var migrationFS embed.FS

// migrationLockKey serializes concurrent migrators on PostgreSQL.
const migrationLockKey = 7324118

type migrationFile struct {
	version  int
	name     string
	up, down string
}

func (s *Store) migrations() ([]migrationFile, error) {
	dir := "migrations/" + s.dialect
	entries, err := fs.ReadDir(migrationFS, dir)
	if err != nil {
		return nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	byVersion := map[int]*migrationFile{}
	for _, e := range entries {
		name := e.Name()
		base, kind, ok := strings.Cut(strings.TrimSuffix(name, ".sql"), ".")
		if !ok || (kind != "up" && kind != "down") {
			return nil, fmt.Errorf("migration %s: name must be NNNN_name.up.sql or .down.sql", name)
		}
		num, label, _ := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if err != nil {
			return nil, fmt.Errorf("migration %s: bad version: %w", name, err)
		}
		body, err := migrationFS.ReadFile(dir + "/" + name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		m := byVersion[v]
		if m == nil {
			m = &migrationFile{version: v, name: label}
			byVersion[v] = m
		}
		if kind == "up" {
			m.up = string(body)
		} else {
			m.down = string(body)
		}
	}
	out := make([]migrationFile, 0, len(byVersion))
	for _, m := range byVersion {
		if m.up == "" || m.down == "" {
			return nil, fmt.Errorf("migration %04d_%s: both up and down files are required", m.version, m.name)
		}
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

func (s *Store) ensureMigrationTable(ctx context.Context, q querier) error {
	ts := "timestamptz"
	if s.dialect == dialectSQLite {
		ts = "TIMESTAMP"
	}
	_, err := q.exec(ctx, `CREATE TABLE IF NOT EXISTS tasker_schema_migrations (
	version integer PRIMARY KEY, name text NOT NULL, applied_at `+ts+` NOT NULL)`)
	if err != nil {
		return fmt.Errorf("create tasker_schema_migrations: %w", err)
	}
	return nil
}

// prepareMigrations creates the bookkeeping table when missing. On
// PostgreSQL it does so under the migration lock: two concurrent
// CREATE TABLE IF NOT EXISTS of one table can fail with a unique violation
// in the catalog (pg_type_typname_nsp_index) when several processes open a
// fresh database at once. SQLite's busy timeout already serializes them.
func (s *Store) prepareMigrations(ctx context.Context) error {
	if s.dialect != dialectPostgres {
		return s.ensureMigrationTable(ctx, s.db)
	}
	return s.inTx(ctx, func(tx txer) error {
		if _, err := tx.exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockKey); err != nil {
			return fmt.Errorf("lock migrations: %w", err)
		}
		return s.ensureMigrationTable(ctx, tx)
	})
}

func (s *Store) appliedVersions(ctx context.Context, q querier) (map[int]time.Time, error) {
	rs, err := q.query(ctx, `SELECT version, applied_at FROM tasker_schema_migrations`)
	if err != nil {
		return nil, fmt.Errorf("read applied migrations: %w", err)
	}
	defer rs.Close()
	out := map[int]time.Time{}
	for rs.Next() {
		var v int
		var at scanTime
		if err := rs.Scan(&v, &at); err != nil {
			return nil, fmt.Errorf("read applied migrations: %w", err)
		}
		out[v] = at.T
	}
	return out, rs.Err()
}

// MigrationStatus implements store.Store.
func (s *Store) MigrationStatus(ctx context.Context) ([]store.Migration, error) {
	files, err := s.migrations()
	if err != nil {
		return nil, err
	}
	if err := s.prepareMigrations(ctx); err != nil {
		return nil, err
	}
	applied, err := s.appliedVersions(ctx, s.db)
	if err != nil {
		return nil, err
	}
	out := make([]store.Migration, len(files))
	for i, f := range files {
		out[i] = store.Migration{Version: f.version, Name: f.name}
		if at, ok := applied[f.version]; ok {
			at := at
			out[i].Applied, out[i].AppliedAt = true, &at
		}
	}
	return out, nil
}

// MigrateUp implements store.Store. Each migration runs in its own
// transaction and checks again that it is not applied; on PostgreSQL an
// advisory lock keeps concurrent migrators apart, on SQLite the write lock
// taken at BEGIN IMMEDIATE does. Any number of processes may migrate one
// fresh database at once.
func (s *Store) MigrateUp(ctx context.Context, steps int) ([]store.Migration, error) {
	return s.migrate(ctx, true, steps)
}

// MigrateDown implements store.Store.
func (s *Store) MigrateDown(ctx context.Context, steps int) ([]store.Migration, error) {
	return s.migrate(ctx, false, steps)
}

func (s *Store) migrate(ctx context.Context, up bool, steps int) ([]store.Migration, error) {
	files, err := s.migrations()
	if err != nil {
		return nil, err
	}
	if err := s.prepareMigrations(ctx); err != nil {
		return nil, err
	}
	if !up {
		sort.Slice(files, func(i, j int) bool { return files[i].version > files[j].version })
	}
	var done []store.Migration
	for _, f := range files {
		if steps > 0 && len(done) >= steps {
			break
		}
		var ran bool
		err := s.inTx(ctx, func(tx txer) error {
			if s.dialect == dialectPostgres {
				if _, err := tx.exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLockKey); err != nil {
					return fmt.Errorf("lock migrations: %w", err)
				}
			}
			applied, err := s.appliedVersions(ctx, tx)
			if err != nil {
				return err
			}
			_, isApplied := applied[f.version]
			if isApplied == up {
				return nil
			}
			body := f.up
			if !up {
				body = f.down
			}
			if _, err := tx.exec(ctx, body); err != nil {
				dir := "up"
				if !up {
					dir = "down"
				}
				return fmt.Errorf("migration %04d_%s %s: %w", f.version, f.name, dir, err)
			}
			if up {
				_, err = tx.exec(ctx, `INSERT INTO tasker_schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)`,
					f.version, f.name, s.t(time.Now()))
			} else {
				_, err = tx.exec(ctx, `DELETE FROM tasker_schema_migrations WHERE version = $1`, f.version)
			}
			if err != nil {
				return fmt.Errorf("record migration %04d: %w", f.version, err)
			}
			ran = true
			return nil
		})
		if err != nil {
			return done, err
		}
		if ran {
			done = append(done, store.Migration{Version: f.version, Name: f.name, Applied: up})
		}
	}
	return done, nil
}
