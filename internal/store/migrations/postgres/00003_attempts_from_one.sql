-- Attempts count from 1, as the device protocol always counted them: the
-- first try of a job is attempt 1 in the database, the API, the CLI, the
-- console and the events alike.

-- +goose Up
UPDATE jobs SET attempt = attempt + 1;
ALTER TABLE jobs ALTER COLUMN attempt SET DEFAULT 1;

-- +goose Down
ALTER TABLE jobs ALTER COLUMN attempt SET DEFAULT 0;
UPDATE jobs SET attempt = attempt - 1;
