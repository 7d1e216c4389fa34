-- +goose Up
-- The otter processes serving this database: each upserts its row every
-- few seconds (heartbeat_at); the one holding the scheduler lock sets
-- leading_since, so the others know where to forward what needs the
-- engine. Rows of replicas that stopped are pruned after a while.
-- IF NOT EXISTS: the migration test runs later migrations again.
CREATE TABLE IF NOT EXISTS replicas (
    id            TEXT PRIMARY KEY,
    url           TEXT NOT NULL,
    version       TEXT NOT NULL,
    started_at    TIMESTAMP NOT NULL,
    heartbeat_at  TIMESTAMP NOT NULL,
    leading_since TIMESTAMP
);

-- +goose Down
DROP TABLE IF EXISTS replicas;
