package sqlite

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// cached reports whether the store's statement cache holds q prepared, and
// whether it is waiting to prepare it.
func cached(s *Store, q string) (prepared, pending bool) {
	c := s.DB().(*sqlDB).stmts
	c.mu.Lock()
	defer c.mu.Unlock()
	_, prepared = c.stmts[q]
	_, pending = c.pending[q]
	return prepared, pending
}

func TestSQLiteStatementCache(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, filepath.Join(t.TempDir(), "c.db"))
	require.NoError(t, err)
	defer s.Close()
	_, err = s.DB().Exec(ctx, "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL); CREATE TABLE other (x INTEGER)")
	require.NoError(t, err)
	p, _ := cached(s, "CREATE TABLE kv (k INTEGER PRIMARY KEY, v TEXT NOT NULL); CREATE TABLE other (x INTEGER)")
	require.False(t, p, "a script of several statements is run as it is, not cached")

	// Met outside a transaction: prepared at once.
	ins := "INSERT INTO kv (k, v) VALUES ($1, $2)"
	_, err = s.DB().Exec(ctx, ins, 1, "one")
	require.NoError(t, err)
	p, _ = cached(s, ins)
	require.True(t, p)

	// Met first inside a transaction: run unprepared (the connection is the
	// transaction's), prepared once the transaction ends, then reused
	// inside the next transaction.
	sel := "SELECT v FROM kv WHERE k = $1"
	tx, err := s.DB().Begin(ctx)
	require.NoError(t, err)
	var v string
	require.NoError(t, tx.QueryRow(ctx, sel, 1).Scan(&v))
	require.Equal(t, "one", v)
	_, err = tx.Exec(ctx, ins, 2, "two") // prepared on the database, bound to the transaction
	require.NoError(t, err)
	p, pend := cached(s, sel)
	require.False(t, p)
	require.True(t, pend)
	require.NoError(t, tx.Commit(ctx))
	p, pend = cached(s, sel)
	require.True(t, p, "prepared when the transaction ended")
	require.False(t, pend)

	tx, err = s.DB().Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, tx.QueryRow(ctx, sel, 2).Scan(&v))
	require.Equal(t, "two", v)
	require.NoError(t, tx.Rollback(ctx))

	// A prepared statement survives a change of the schema (SQLite compiles
	// it again) and sees the new column.
	_, err = s.DB().Exec(ctx, "ALTER TABLE kv ADD COLUMN w TEXT NOT NULL DEFAULT 'x'")
	require.NoError(t, err)
	star := "SELECT * FROM kv WHERE k = $1"
	var k int
	var w string
	require.NoError(t, s.DB().QueryRow(ctx, star, 1).Scan(&k, &v, &w))
	require.Equal(t, "x", w)
	require.NoError(t, s.DB().QueryRow(ctx, sel, 2).Scan(&v))
	require.Equal(t, "two", v)

	// The cache is bounded: past maxCachedStmts statements run unprepared.
	for i := range maxCachedStmts + 10 {
		require.NoError(t, s.DB().QueryRow(ctx, fmt.Sprintf("SELECT v FROM kv WHERE k = $1 AND %d = %d", i, i), 1).Scan(&v))
	}
	c := s.DB().(*sqlDB).stmts
	c.mu.Lock()
	n := len(c.stmts)
	c.mu.Unlock()
	require.Equal(t, maxCachedStmts, n)

	// A bad statement is not cached and reports its error.
	_, err = s.DB().Exec(ctx, "INSERT INTO nosuch VALUES (1)")
	require.ErrorContains(t, err, "nosuch")

	require.NoError(t, s.Close())
	c.mu.Lock()
	require.Empty(t, c.stmts, "closed with the store")
	c.mu.Unlock()
}
