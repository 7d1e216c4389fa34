-- The whole product's schema. Sized for a fleet of 1,000,000 devices: every
-- list the API pages through and every set the engine scans has an index
-- that matches its WHERE and ORDER BY, so no request reads a whole table.

-- +goose Up
CREATE TABLE products (
    key         TEXT PRIMARY KEY,
    name        TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE devices (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product     TEXT NOT NULL REFERENCES products (key),
    key         TEXT NOT NULL,
    secret_hash BYTEA NOT NULL,
    online      BOOLEAN NOT NULL DEFAULT FALSE,
    last_seen   TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (product, key)
);
CREATE INDEX devices_product_online ON devices (product, online, id);
-- A product's devices page by page in id order, without sorting the product.
CREATE INDEX devices_product ON devices (product, id);

CREATE TABLE device_tags (
    device_id BIGINT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    name      TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (device_id, name)
);
CREATE INDEX device_tags_lookup ON device_tags (name, value, device_id);

CREATE TABLE device_versions (
    device_id   BIGINT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    module      TEXT NOT NULL,
    version     TEXT NOT NULL,
    reported_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (device_id, module)
);
CREATE INDEX device_versions_lookup ON device_versions (module, version, device_id);

CREATE TABLE firmware (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product         TEXT NOT NULL REFERENCES products (key),
    module          TEXT NOT NULL,
    version         TEXT NOT NULL,
    size            BIGINT NOT NULL,
    sha256          TEXT NOT NULL,
    signature       TEXT NOT NULL,
    from_versions   TEXT NOT NULL DEFAULT '[]',
    params          TEXT NOT NULL DEFAULT '{}',
    description     TEXT NOT NULL DEFAULT '',
    verify_required BOOLEAN NOT NULL DEFAULT FALSE,
    allow_downgrade BOOLEAN NOT NULL DEFAULT FALSE,
    verified_by     BIGINT,
    verified_at     TIMESTAMPTZ,
    blob_key        TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (product, module, version)
);

CREATE TABLE tasks (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         TEXT NOT NULL DEFAULT '',
    product      TEXT NOT NULL REFERENCES products (key),
    module       TEXT NOT NULL,
    firmware_id  BIGINT NOT NULL REFERENCES firmware (id),
    version      TEXT NOT NULL,
    verification BOOLEAN NOT NULL DEFAULT FALSE,
    mode         TEXT NOT NULL,
    state        TEXT NOT NULL,
    policy       TEXT NOT NULL DEFAULT '{}',
    target       TEXT NOT NULL DEFAULT '{}',
    phase        INTEGER NOT NULL DEFAULT 0,
    total        BIGINT NOT NULL DEFAULT 0,
    reason       TEXT NOT NULL DEFAULT '',
    -- engine bookkeeping that must survive a restart (rate budget, phase
    -- start); opaque JSON owned by the engine.
    engine       TEXT NOT NULL DEFAULT '{}',
    created_by   TEXT NOT NULL DEFAULT '',
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    started_at   TIMESTAMPTZ,
    ended_at     TIMESTAMPTZ
);
CREATE INDEX tasks_state ON tasks (state, id);
CREATE INDEX tasks_firmware ON tasks (firmware_id, id);
CREATE INDEX tasks_product ON tasks (product, id);

-- Exact job counts per phase and state, changed in the same transaction as
-- the jobs, so a task's progress and a phase's success rate are read without
-- counting a million rows.
CREATE TABLE task_counts (
    task_id BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    phase   INTEGER NOT NULL,
    state   TEXT NOT NULL,
    n       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (task_id, phase, state)
);

-- A task's progress over time: jobs started, succeeded and failed per
-- minute, written with the job changes, so the console draws a rollout's
-- curve without reading a million events.
CREATE TABLE task_minutes (
    task_id   BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    minute    TIMESTAMPTZ NOT NULL,
    started   BIGINT NOT NULL DEFAULT 0,
    succeeded BIGINT NOT NULL DEFAULT 0,
    failed    BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (task_id, minute)
);

-- jobs.device_id has no foreign key on purpose: a deleted device's history
-- stays readable under its key.
CREATE TABLE jobs (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id         BIGINT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    device_id       BIGINT NOT NULL,
    device          TEXT NOT NULL,
    product         TEXT NOT NULL,
    module          TEXT NOT NULL,
    state           TEXT NOT NULL,
    percent         INTEGER NOT NULL DEFAULT 0,
    attempt         INTEGER NOT NULL DEFAULT 0,
    code            TEXT NOT NULL DEFAULT '',
    message         TEXT NOT NULL DEFAULT '',
    phase           INTEGER NOT NULL DEFAULT 0,
    seq             BIGINT NOT NULL DEFAULT 0,
    from_version    TEXT NOT NULL DEFAULT '',
    version         TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    started_at      TIMESTAMPTZ,
    deadline        TIMESTAMPTZ,
    next_attempt_at TIMESTAMPTZ,
    sent_at         TIMESTAMPTZ,
    -- rev rises with every change: writers update WHERE rev = the value they
    -- read, so two replicas can never overwrite each other's transition.
    rev             BIGINT NOT NULL DEFAULT 0
);
-- One active job per device and module, enforced by the database itself.
CREATE UNIQUE INDEX jobs_one_active ON jobs (device_id, module)
    WHERE state NOT IN ('succeeded', 'failed', 'rejected', 'timed_out', 'cancelled');
CREATE INDEX jobs_task_state ON jobs (task_id, state, id);
CREATE INDEX jobs_device ON jobs (device_id, id);
CREATE INDEX jobs_queued ON jobs (task_id, phase, seq) WHERE state = 'queued';
CREATE INDEX jobs_deadline ON jobs (deadline) WHERE deadline IS NOT NULL;
CREATE INDEX jobs_next_attempt ON jobs (next_attempt_at) WHERE next_attempt_at IS NOT NULL;

CREATE TABLE events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          TIMESTAMPTZ NOT NULL,
    actor       TEXT NOT NULL,
    kind        TEXT NOT NULL,
    action      TEXT NOT NULL,
    product     TEXT NOT NULL DEFAULT '',
    device      TEXT NOT NULL DEFAULT '',
    firmware_id BIGINT,
    task_id     BIGINT,
    job_id      BIGINT,
    message     TEXT NOT NULL DEFAULT '',
    data        TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_at ON events (at);
CREATE INDEX events_kind ON events (kind, id);
CREATE INDEX events_actor ON events (actor, id);
CREATE INDEX events_device ON events (product, device, id) WHERE device <> '';
CREATE INDEX events_task ON events (task_id, id) WHERE task_id IS NOT NULL;
CREATE INDEX events_job ON events (job_id, id) WHERE job_id IS NOT NULL;
CREATE INDEX events_firmware ON events (firmware_id, id) WHERE firmware_id IS NOT NULL;

CREATE TABLE tokens (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL,
    hash         BYTEA NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);

-- Server-wide secrets and settings shared by every replica (for example the
-- key that signs download URLs).
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- +goose Down
DROP TABLE settings;
DROP TABLE tokens;
DROP TABLE events;
DROP TABLE jobs;
DROP TABLE task_minutes;
DROP TABLE task_counts;
DROP TABLE tasks;
DROP TABLE firmware;
DROP TABLE device_versions;
DROP TABLE device_tags;
DROP TABLE devices;
DROP TABLE products;
