-- The migrations' bookkeeping (internal/store/sqlcore/migrate.go).

-- name: MigrationLock
-- Serializes concurrent migrators until the transaction ends.
SELECT pg_advisory_xact_lock(7324118);

-- name: MigrationTableCreate
CREATE TABLE IF NOT EXISTS tasker_schema_migrations (
	version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL);

-- name: MigrationsApplied
SELECT version, applied_at FROM tasker_schema_migrations;

-- name: MigrationRecord
INSERT INTO tasker_schema_migrations (version, name, applied_at) VALUES ($1, $2, $3);

-- name: MigrationForget
DELETE FROM tasker_schema_migrations WHERE version = $1;

-- name: MigrationsRecorded
SELECT version, name, applied_at FROM tasker_schema_migrations;

-- name: MigrationRenumber
UPDATE tasker_schema_migrations SET version = $1 WHERE version = $2;
