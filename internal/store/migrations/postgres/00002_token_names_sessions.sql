-- +goose Up
-- Token names are unique, case-insensitively, so that the actor an event
-- records names one token. Of older duplicates, the first keeps its name and
-- the later ones get their id appended ("ci" -> "ci-7").
UPDATE tokens SET name = name || '-' || id::text
WHERE EXISTS (SELECT 1 FROM tokens o WHERE lower(o.name) = lower(tokens.name) AND o.id < tokens.id);
CREATE UNIQUE INDEX tokens_name ON tokens (lower(name));

-- Console sessions signed out before they expire: the cookie is refused
-- from then on by every replica. A row is deleted once its session would
-- have expired anyway.
CREATE TABLE ended_sessions (
    id         BYTEA PRIMARY KEY,
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX ended_sessions_expires ON ended_sessions (expires_at);

-- +goose Down
DROP TABLE ended_sessions;
DROP INDEX tokens_name;
