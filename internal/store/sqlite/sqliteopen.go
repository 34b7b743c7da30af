package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"
)

// sqliteBusyTimeoutMS is how long a statement waits for another
// connection's lock before SQLITE_BUSY, and how long Open keeps
// retrying the switch to WAL mode.
const sqliteBusyTimeoutMS = 10000

// sqliteDSN is the driver's data source name for the file at path: the busy
// timeout first (the driver runs it before the other pragmas whatever their
// order), foreign keys on, synchronous NORMAL (safe in WAL mode), and
// BEGIN IMMEDIATE so that a write transaction takes the write lock at its
// start. WAL mode is not in the DSN: setWAL sets it after the open.
func sqliteDSN(path string) string {
	return "file:" + path + "?_pragma=busy_timeout(" + strconv.Itoa(sqliteBusyTimeoutMS) +
		")&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"
}

// createPrivate creates the database file at path with mode 0600 when it
// does not exist, so that SQLite (which creates -wal and -shm with the
// main file's permissions) never makes a world-readable database. An
// existing file is left alone. In-memory and temporary databases ("",
// ":memory:", "file:..." URIs) are skipped.
func createPrivate(path string) error {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create database file: %w", err)
	}
	// The umask may have removed bits; the owner needs both.
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return fmt.Errorf("create database file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("create database file: %w", err)
	}
	return nil
}

// setWAL switches the database to WAL mode (a persistent setting of the
// file). Switching needs the write lock after reading the header; when
// another process is switching or migrating the same fresh file, SQLite
// answers SQLITE_BUSY at once instead of waiting (a reader that wants to
// write while another writer waits would deadlock), so the switch is
// retried with a short backoff for up to sqliteBusyTimeoutMS.
func setWAL(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(sqliteBusyTimeoutMS * time.Millisecond)
	wait := time.Millisecond
	for {
		var mode string
		err := db.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode)
		switch {
		case err == nil && strings.EqualFold(mode, "wal"):
			return nil
		case err == nil:
			return fmt.Errorf("set WAL mode: the database stayed in %q mode", mode)
		case !isBusy(err) || time.Now().After(deadline):
			return fmt.Errorf("set WAL mode: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("set WAL mode: %w (after %v)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
}

// isBusy reports SQLITE_BUSY (and its extended codes) or SQLITE_LOCKED.
func isBusy(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "SQLITE_BUSY") || strings.Contains(msg, "database is locked") ||
		strings.Contains(msg, "SQLITE_LOCKED")
}
