-- PostgreSQL-only change (queue notification trigger); SQLite has no notifications.
SELECT 1;
