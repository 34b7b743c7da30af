package sqlite

import (
	"context"
	"database/sql"
	"strings"
	"sync"
)

// stmtCache keeps SQLite's prepared statements by query text. database/sql
// prepares every Exec and Query afresh, and SQLite compiles the SQL text
// each time: with the store's long statements, compiling was a third of
// the process's CPU time in a single-step burn-down. A statement prepared
// on the database (not on a transaction) stays prepared on the store's one
// connection and is reused, inside transactions too (sql.Tx.StmtContext).
//
// The connection is the store's only one, so a statement cannot be
// prepared on the database while a transaction holds it: a statement first
// met inside a transaction runs unprepared and is prepared when the
// transaction ends.
type stmtCache struct {
	db      *sql.DB
	mu      sync.Mutex
	stmts   map[string]*sql.Stmt
	pending map[string]struct{} // met inside a transaction, not yet prepared
	closed  bool
}

// maxCachedStmts bounds the cache: the store's statements are a fixed set
// plus a few combinations of filters (task listings); text built from
// something unbounded would stop being cached here, not grow the cache.
const maxCachedStmts = 256

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, stmts: map[string]*sql.Stmt{}, pending: map[string]struct{}{}}
}

// cacheable reports whether q is one statement (a script of several, like
// a migration, is run as it is).
func cacheable(q string) bool {
	return !strings.Contains(strings.TrimRight(q, " \t\r\n;"), ";")
}

// get returns q's prepared statement, or nil when it is not (yet) prepared.
// Outside a transaction (inTx false) it prepares q now; inside one it notes
// q for preparePending.
func (c *stmtCache) get(ctx context.Context, q string, inTx bool) *sql.Stmt {
	if c == nil || !cacheable(q) {
		return nil
	}
	c.mu.Lock()
	st, full := c.stmts[q], len(c.stmts) >= maxCachedStmts
	if st == nil && inTx && !full && !c.closed {
		c.pending[q] = struct{}{}
	}
	c.mu.Unlock()
	if st != nil || inTx || full {
		return st
	}
	return c.prepare(ctx, q)
}

// prepare prepares q on the database (waiting for the connection to be
// free) and caches it; nil when that fails (the caller runs q unprepared
// and sees the error, if it is one, from that).
func (c *stmtCache) prepare(ctx context.Context, q string) *sql.Stmt {
	st, err := c.db.PrepareContext(ctx, q)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.stmts[q]; old != nil || c.closed {
		_ = st.Close()
		return old
	}
	c.stmts[q] = st
	delete(c.pending, q)
	return st
}

// preparePending prepares the statements met inside transactions; called
// when a transaction has ended and the connection is free.
func (c *stmtCache) preparePending(ctx context.Context) {
	if c == nil {
		return
	}
	c.mu.Lock()
	if len(c.pending) == 0 {
		c.mu.Unlock()
		return
	}
	qs := make([]string, 0, len(c.pending))
	for q := range c.pending {
		qs = append(qs, q)
	}
	clear(c.pending)
	c.mu.Unlock()
	for _, q := range qs {
		c.prepare(context.WithoutCancel(ctx), q)
	}
}

// close closes the prepared statements; later gets prepare nothing.
func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	for q, st := range c.stmts {
		_ = st.Close()
		delete(c.stmts, q)
	}
}
