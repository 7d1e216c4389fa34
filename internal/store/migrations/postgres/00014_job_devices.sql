-- +goose Up
-- The indexes by device leave jobs for two small tables of their own:
-- job_devices, every job under its device (a device's jobs, job events, and
-- latest job per module), and active_jobs, a device's active job per module,
-- whose primary key is the one-active-job rule the unique index
-- jobs_one_active enforced. jobs then has no index keyed on the device:
-- inserting a task's jobs put two entries each at a random place of two
-- indexes (the key is the device, the order the rollout's), where the new
-- tables are filled in device order; and every job change (a start, each
-- report) wrote a new entry into both indexes too, the row being a new
-- version that no index-free update (HOT) can make, as the state is in an
-- index.
--
-- active_jobs follows jobs.active, which the store keeps equal to "state
-- is not terminal" (see migration 00010): a new task's jobs are added to
-- both tables with the jobs, and the trigger below moves a job out of
-- active_jobs when it ends and back when it is retried, in the statement
-- that changes it, so a second active job on a device's module is refused
-- inside the same transaction, as before. It fires only on a change of
-- active: a job's start and reports do not call it.
-- IF NOT EXISTS and the refill: the migration test runs it again.
CREATE TABLE IF NOT EXISTS job_devices (
    device_id BIGINT NOT NULL,
    job_id    BIGINT NOT NULL,
    module    TEXT NOT NULL,
    PRIMARY KEY (device_id, job_id)
);
CREATE TABLE IF NOT EXISTS active_jobs (
    device_id BIGINT NOT NULL,
    module    TEXT NOT NULL,
    job_id    BIGINT NOT NULL,
    PRIMARY KEY (device_id, module)
);
DELETE FROM job_devices;
DELETE FROM active_jobs;
INSERT INTO job_devices (device_id, job_id, module) SELECT device_id, id, module FROM jobs ORDER BY device_id, id;
INSERT INTO active_jobs (device_id, module, job_id) SELECT device_id, module, id FROM jobs WHERE active ORDER BY device_id, module;
DROP INDEX IF EXISTS jobs_one_active;
DROP INDEX IF EXISTS jobs_device;
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION jobs_active_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.active THEN
        INSERT INTO active_jobs (device_id, module, job_id) VALUES (NEW.device_id, NEW.module, NEW.id);
    ELSE
        DELETE FROM active_jobs WHERE device_id = OLD.device_id AND module = OLD.module AND job_id = OLD.id;
    END IF;
    RETURN NULL;
END
$$;
-- +goose StatementEnd
DROP TRIGGER IF EXISTS jobs_active ON jobs;
CREATE TRIGGER jobs_active AFTER UPDATE OF active ON jobs FOR EACH ROW
    WHEN (OLD.active IS DISTINCT FROM NEW.active) EXECUTE FUNCTION jobs_active_changed();

-- +goose Down
DROP TRIGGER jobs_active ON jobs;
DROP FUNCTION jobs_active_changed();
CREATE INDEX jobs_device ON jobs (device_id, id);
CREATE UNIQUE INDEX jobs_one_active ON jobs (device_id, module) WHERE active;
DROP TABLE active_jobs;
DROP TABLE job_devices;
