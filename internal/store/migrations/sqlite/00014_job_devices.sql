-- +goose Up
-- The indexes by device leave jobs for two small tables of their own:
-- job_devices, every job under its device (a device's jobs, job events, and
-- latest job per module), and active_jobs, a device's active job per module,
-- whose primary key is the one-active-job rule the unique index
-- jobs_one_active enforced. jobs then has no index keyed on the device:
-- inserting a task's jobs put two entries each at a random place of two
-- indexes as large as the table's rows (the key is the device, the order
-- the rollout's), where the new tables are filled in device order, a
-- fraction of the cost; and on PostgreSQL every job change (a start, each
-- report) wrote a new entry into both indexes too, the row being a new
-- version that no index-free update (HOT) can make, as the state is in an
-- index.
--
-- active_jobs follows jobs.active, which the store keeps equal to "state
-- is not terminal" (see migration 00010): a new task's jobs are added to
-- both tables with the jobs, and the store moves a job out of active_jobs
-- when it ends and back when it is retried, set-based, in the transaction
-- that changes it, so a second active job on a device's module is refused
-- inside the same transaction, as before. (No trigger: on PostgreSQL a row
-- trigger cost a bulk cancel ~10 µs of CPU a job; both dialects alike.)
-- IF NOT EXISTS and the refill: the migration test runs it again.
CREATE TABLE IF NOT EXISTS job_devices (
    device_id BIGINT NOT NULL,
    job_id    BIGINT NOT NULL,
    module    TEXT NOT NULL,
    PRIMARY KEY (device_id, job_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS active_jobs (
    device_id BIGINT NOT NULL,
    module    TEXT NOT NULL,
    job_id    BIGINT NOT NULL,
    PRIMARY KEY (device_id, module)
) WITHOUT ROWID;
DELETE FROM job_devices;
DELETE FROM active_jobs;
INSERT INTO job_devices (device_id, job_id, module) SELECT device_id, id, module FROM jobs ORDER BY device_id, id;
INSERT INTO active_jobs (device_id, module, job_id) SELECT device_id, module, id FROM jobs WHERE active ORDER BY device_id, module;
DROP INDEX IF EXISTS jobs_one_active;
DROP INDEX IF EXISTS jobs_device;
-- Triggers an earlier draft of this migration made.
DROP TRIGGER IF EXISTS jobs_ended;
DROP TRIGGER IF EXISTS jobs_back;

-- +goose Down
CREATE INDEX jobs_device ON jobs (device_id, id);
CREATE UNIQUE INDEX jobs_one_active ON jobs (device_id, module) WHERE active;
DROP TABLE active_jobs;
DROP TABLE job_devices;
