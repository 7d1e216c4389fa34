-- Attempts count from 1, as the device protocol always counted them: the
-- first try of a job is attempt 1 in the database, the API, the CLI, the
-- console and the events alike. Inserts name the attempt explicitly
-- (SQLite cannot change a column default).

-- A job that ended without success shows 0%, never 100%.

-- +goose Up
UPDATE jobs SET attempt = attempt + 1;
UPDATE jobs SET percent = 0 WHERE state IN ('failed', 'rejected', 'timed_out', 'cancelled');

-- +goose Down
UPDATE jobs SET attempt = attempt - 1;
