-- +goose Up
-- A device's job events leave the (product, device, id) index: a device's
-- events are listed as its other events from this index and its job events
-- through its jobs (jobs_device, then events_job). Jobs start in rollout
-- order, a hash of the device, so every job event put one entry at a random
-- place of this index: at 1,000,000 jobs, nearly one index page written to
-- the WAL (and checkpointed) per job started, 40 % of a start's CPU on
-- SQLite. Every other index an event has is appended to at its end.
--
-- A deleted device's jobs keep its old id; former_devices remembers which
-- ids a device key had, so its job events are still listed under the key,
-- as before. It is filled here from the jobs of devices deleted so far
-- (the migration may run again: the tests undo later migrations' records).
CREATE TABLE IF NOT EXISTS former_devices (
    id      BIGINT PRIMARY KEY,
    product TEXT NOT NULL,
    key     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS former_devices_key ON former_devices (product, key);
INSERT INTO former_devices (id, product, key)
    SELECT DISTINCT device_id, product, device FROM jobs j
    WHERE NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = j.device_id)
    ON CONFLICT (id) DO NOTHING;
DROP INDEX IF EXISTS events_device;
CREATE INDEX events_device ON events (product, device, id) WHERE device <> '' AND job_id IS NULL;

-- +goose Down
DROP INDEX events_device;
CREATE INDEX events_device ON events (product, device, id) WHERE device <> '';
DROP TABLE former_devices;
