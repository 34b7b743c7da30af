package sqlcore

import (
	"context"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tasker-systems/tasker/internal/store"
)

// Migrations are a database's schema migrations: files NNNN_name.up.sql
// and NNNN_name.down.sql in Dir of FS. Number N is the same logical change
// on every database; where a change does not apply, its files hold only
// comments saying why (they run nothing and are recorded like any other).
// Names are unique: a database that recorded a migration under another
// number (SQLite's numbering before the numbers were shared: its 0003 is
// now 0004) is renumbered by name when the migrations are first read (see
// renumber).
type Migrations struct {
	FS  fs.FS
	Dir string
}

// migrationSet is the loaded migrations.
type migrationSet struct {
	files []migrationFile
}

type migrationFile struct {
	version  int
	name     string
	up, down string
}

// loadMigrations reads and checks the migration files of m.
func loadMigrations(m Migrations) (migrationSet, error) {
	dir := m.Dir
	entries, err := fs.ReadDir(m.FS, dir)
	if err != nil {
		return migrationSet{}, fmt.Errorf("read embedded migrations: %w", err)
	}
	byVersion := map[int]*migrationFile{}
	for _, e := range entries {
		name := e.Name()
		base, kind, ok := strings.Cut(strings.TrimSuffix(name, ".sql"), ".")
		if !ok || (kind != "up" && kind != "down") {
			return migrationSet{}, fmt.Errorf("migration %s: name must be NNNN_name.up.sql or .down.sql", name)
		}
		num, label, _ := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if err != nil {
			return migrationSet{}, fmt.Errorf("migration %s: bad version: %w", name, err)
		}
		body, err := fs.ReadFile(m.FS, dir+"/"+name)
		if err != nil {
			return migrationSet{}, fmt.Errorf("read migration %s: %w", name, err)
		}
		mf := byVersion[v]
		if mf == nil {
			mf = &migrationFile{version: v, name: label}
			byVersion[v] = mf
		}
		if kind == "up" {
			mf.up = string(body)
		} else {
			mf.down = string(body)
		}
	}
	out := make([]migrationFile, 0, len(byVersion))
	for _, mf := range byVersion {
		if mf.up == "" || mf.down == "" {
			return migrationSet{}, fmt.Errorf("migration %04d_%s: both up and down files are required", mf.version, mf.name)
		}
		out = append(out, *mf)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return migrationSet{files: out}, nil
}

// prepareMigrations creates the bookkeeping table when missing and
// translates an older numbering (renumber), under the
// migration lock: two concurrent CREATE TABLE IF NOT EXISTS of one table
// can fail with a unique violation in PostgreSQL's catalog
// (pg_type_typname_nsp_index) when several processes open a fresh database
// at once.
func (s *Core) prepareMigrations(ctx context.Context) error {
	return s.InTx(ctx, func(tx Tx) error {
		if err := s.d.LockMigrations(ctx, tx); err != nil {
			return fmt.Errorf("lock migrations: %w", err)
		}
		if _, err := tx.Exec(ctx, s.Q("MigrationTableCreate")); err != nil {
			return fmt.Errorf("create tasker_schema_migrations: %w", err)
		}
		if err := s.renumber(ctx, tx); err != nil {
			return fmt.Errorf("renumber migrations: %w", err)
		}
		return nil
	})
}

func (s *Core) appliedVersions(ctx context.Context, q Querier) (map[int]time.Time, error) {
	rs, err := q.Query(ctx, s.Q("MigrationsApplied"))
	if err != nil {
		return nil, fmt.Errorf("read applied migrations: %w", err)
	}
	defer rs.Close()
	out := map[int]time.Time{}
	for rs.Next() {
		var v int
		var at ScanTime
		if err := rs.Scan(&v, &at); err != nil {
			return nil, fmt.Errorf("read applied migrations: %w", err)
		}
		out[v] = at.T
	}
	return out, rs.Err()
}

// MigrationStatus implements store.Store.
func (s *Core) MigrationStatus(ctx context.Context) ([]store.Migration, error) {
	files := s.mq.files
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
func (s *Core) MigrateUp(ctx context.Context, steps int) ([]store.Migration, error) {
	return s.migrate(ctx, true, steps)
}

// MigrateDown implements store.Store.
func (s *Core) MigrateDown(ctx context.Context, steps int) ([]store.Migration, error) {
	return s.migrate(ctx, false, steps)
}

func (s *Core) migrate(ctx context.Context, up bool, steps int) ([]store.Migration, error) {
	s.named.forget() // tables may be dropped and made again
	files := slices.Clone(s.mq.files)
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
		err := s.InTx(ctx, func(tx Tx) error {
			if err := s.d.LockMigrations(ctx, tx); err != nil {
				return fmt.Errorf("lock migrations: %w", err)
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
			if noop(body) {
				// Nothing to run on this database (see Migrations).
			} else if _, err := tx.Exec(ctx, body); err != nil {
				dir := "up"
				if !up {
					dir = "down"
				}
				return fmt.Errorf("migration %04d_%s %s: %w", f.version, f.name, dir, err)
			}
			if up {
				_, err = tx.Exec(ctx, s.Q("MigrationRecord"),
					f.version, f.name, s.T(time.Now()))
			} else {
				_, err = tx.Exec(ctx, s.Q("MigrationForget"), f.version)
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

// noop reports a migration body of comments and blank lines only.
func noop(body string) bool {
	for _, line := range strings.Split(body, "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "--") {
			return false
		}
	}
	return true
}

// renumber translates, inside tx, the versions recorded under an older
// numbering: a recorded (version, name) whose name is the migration file of
// another version takes that version. The comment-only migrations (no
// change on this database) below the highest translated version are then
// recorded too, at the time of the next applied one: the database went
// through them without needing them. A database recorded under the current
// numbering is left alone.
func (s *Core) renumber(ctx context.Context, tx Tx) error {
	byName := make(map[string]migrationFile, len(s.mq.files))
	for _, f := range s.mq.files {
		byName[f.name] = f
	}
	rs, err := tx.Query(ctx, s.Q("MigrationsRecorded"))
	if err != nil {
		return fmt.Errorf("read applied migrations: %w", err)
	}
	type rec struct {
		version int
		name    string
		at      ScanTime
	}
	var recs []rec
	for rs.Next() {
		var r rec
		if err := rs.Scan(&r.version, &r.name, &r.at); err != nil {
			rs.Close()
			return fmt.Errorf("read applied migrations: %w", err)
		}
		recs = append(recs, r)
	}
	rs.Close()
	if err := rs.Err(); err != nil {
		return fmt.Errorf("read applied migrations: %w", err)
	}
	moves := map[int]int{} // old version -> new
	for _, r := range recs {
		if f, ok := byName[r.name]; ok && f.version != r.version {
			moves[r.version] = f.version
		}
	}
	if len(moves) == 0 {
		return nil
	}
	// Two passes, through negative versions, so that no version is taken
	// twice in between (old 0004 becomes 0005 while old 0005 becomes 0011).
	for old := range moves {
		if _, err := tx.Exec(ctx, s.Q("MigrationRenumber"), -old, old); err != nil {
			return fmt.Errorf("renumber migration %04d: %w", old, err)
		}
	}
	top := 0
	for old, v := range moves {
		if _, err := tx.Exec(ctx, s.Q("MigrationRenumber"), v, -old); err != nil {
			return fmt.Errorf("renumber migration %04d to %04d: %w", old, v, err)
		}
		top = max(top, v)
	}
	recorded := map[int]ScanTime{}
	for _, r := range recs {
		v := r.version
		if nv, ok := moves[v]; ok {
			v = nv
		}
		recorded[v] = r.at
	}
	for i, f := range s.mq.files {
		if _, ok := recorded[f.version]; ok || f.version > top || !noop(f.up) {
			continue
		}
		at := time.Now()
		for _, next := range s.mq.files[i+1:] {
			if t, ok := recorded[next.version]; ok && t.Valid {
				at = t.T
				break
			}
		}
		if _, err := tx.Exec(ctx, s.Q("MigrationRecord"), f.version, f.name, s.T(at)); err != nil {
			return fmt.Errorf("record migration %04d: %w", f.version, err)
		}
	}
	return nil
}
