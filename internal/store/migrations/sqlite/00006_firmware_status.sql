-- +goose Up
-- A firmware's lifecycle: active, deprecated (no new task may use it) or
-- deleted (its file is gone; the row stays so that tasks, jobs and events
-- that used it still name its version and hash).
ALTER TABLE firmware ADD COLUMN status TEXT NOT NULL DEFAULT 'active';

-- +goose Down
ALTER TABLE firmware DROP COLUMN status;
