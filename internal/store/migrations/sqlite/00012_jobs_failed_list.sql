-- +goose Up
-- On PostgreSQL this migration adds jobs_task_failed, the covering index
-- of a task's failed jobs that SQLite has had since 00009. The number
-- exists for both dialects, as every migration.
SELECT 1;

-- +goose Down
SELECT 1;
