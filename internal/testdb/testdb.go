// Package testdb hands tests a real, migrated, isolated database: a fresh
// PostgreSQL schema on the server named by TEST_DATABASE_URL, or a fresh
// SQLite file. Under CI=true a missing PostgreSQL fails the test instead of
// skipping it, so CI can never pass without having tested PostgreSQL.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tasker-systems/tasker/internal/store/postgres"
	"github.com/tasker-systems/tasker/internal/store/sqlite"
)

// EnvURL is the variable naming the PostgreSQL server for tests.
const EnvURL = "TEST_DATABASE_URL"

// PostgresServerURL returns the server URL, skipping the test when none is
// configured (failing it under CI=true).
func PostgresServerURL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv(EnvURL)
	if u == "" {
		if os.Getenv("CI") == "true" {
			tb.Fatalf("%s is not set: PostgreSQL tests must run under CI (start one with scripts/pg-throwaway.sh)", EnvURL)
		}
		tb.Skipf("%s is not set: skipping PostgreSQL test", EnvURL)
	}
	return u
}

// PostgresURL creates an empty schema for this test and returns a database
// URL whose search_path points at it. The schema is dropped at cleanup.
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	server := PostgresServerURL(tb)
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "tasker_test_" + hex.EncodeToString(b[:])
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		tb.Fatalf("connect to test PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		tb.Fatalf("create schema %s: %v", schema, err)
	}
	tb.Cleanup(func() {
		c, err := pgx.Connect(context.Background(), server)
		if err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer c.Close(context.Background())
		if _, err := c.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	pu, err := url.Parse(server)
	if err != nil {
		tb.Fatalf("parse %s: %v", EnvURL, err)
	}
	q := pu.Query()
	q.Set("search_path", schema)
	pu.RawQuery = q.Encode()
	return pu.String()
}

// Postgres returns a migrated store on a fresh schema, closed at cleanup.
func Postgres(tb testing.TB) *postgres.Store {
	tb.Helper()
	st, err := postgres.Open(context.Background(), PostgresURL(tb))
	if err != nil {
		tb.Fatalf("open PostgreSQL store: %v", err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	if _, err := st.MigrateUp(context.Background(), 0); err != nil {
		tb.Fatalf("migrate PostgreSQL store: %v", err)
	}
	return st
}

// SQLitePath returns a path for a fresh SQLite file in the test's temp dir.
func SQLitePath(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(tb.TempDir(), "tasker.db")
}

// SQLite returns a migrated store on a fresh SQLite file, closed at cleanup.
func SQLite(tb testing.TB) *sqlite.Store {
	tb.Helper()
	st, err := sqlite.Open(context.Background(), SQLitePath(tb))
	if err != nil {
		tb.Fatalf("open SQLite store: %v", err)
	}
	tb.Cleanup(func() { _ = st.Close() })
	if _, err := st.MigrateUp(context.Background(), 0); err != nil {
		tb.Fatalf("migrate SQLite store: %v", err)
	}
	return st
}

// EachBackend runs fn as two parallel subtests, "sqlite" (a fresh SQLite
// file) and "postgres" (a fresh schema on TEST_DATABASE_URL), with the
// database URL to open.
func EachBackend(t *testing.T, fn func(t *testing.T, url string)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		fn(t, "sqlite:"+SQLitePath(t))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		fn(t, PostgresURL(t))
	})
}
