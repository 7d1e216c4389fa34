-- +goose Up
-- A task's activity per second over its first ten minutes, beside
-- task_minutes: the progress chart of a rollout that takes seconds needs
-- more than one point a minute, and ten minutes bound the rows a task adds.
CREATE TABLE IF NOT EXISTS task_seconds (
    task_id   BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    second    TIMESTAMP NOT NULL,
    started   BIGINT NOT NULL DEFAULT 0,
    succeeded BIGINT NOT NULL DEFAULT 0,
    failed    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (task_id, second)
);

-- +goose Down
DROP TABLE task_seconds;
