-- +goose Up
-- A task's jobs listed without a state filter, in id order: the
-- (task_id, state, id) index cannot give that order, so the database
-- sorted or scanned every job of the task (196 ms a page at 1,000,000).
CREATE INDEX IF NOT EXISTS jobs_task ON jobs (task_id, id);

-- +goose Down
DROP INDEX jobs_task;
