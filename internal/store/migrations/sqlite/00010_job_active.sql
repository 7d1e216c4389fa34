-- +goose Up
-- The one-active-job index keys on an active flag instead of the job's
-- state. A partial index whose condition names a column an UPDATE sets is
-- rewritten for every row the UPDATE changes (SQLite cannot tell that the
-- condition stays true), so every job start (queued -> notified) and
-- every progress report deleted and re-inserted the job's entry, at a
-- random place in the index (the key is the device): at 1,000,000 jobs,
-- about one index page written to the WAL and checkpointed per job. The
-- flag changes only when a job ends or comes back from an end (a retry),
-- and only then is the index touched. The store keeps active equal to
-- "state is not terminal" wherever it changes a job's state.
ALTER TABLE jobs ADD COLUMN active BOOLEAN NOT NULL DEFAULT TRUE;
UPDATE jobs SET active = FALSE WHERE state IN ('succeeded', 'failed', 'rejected', 'timed_out', 'cancelled');
DROP INDEX jobs_one_active;
CREATE UNIQUE INDEX jobs_one_active ON jobs (device_id, module) WHERE active;

-- +goose Down
DROP INDEX jobs_one_active;
CREATE UNIQUE INDEX jobs_one_active ON jobs (device_id, module)
    WHERE state NOT IN ('succeeded', 'failed', 'rejected', 'timed_out', 'cancelled');
ALTER TABLE jobs DROP COLUMN active;
