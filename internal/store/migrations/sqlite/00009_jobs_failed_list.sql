-- +goose Up
-- A task's failed jobs (failed, rejected or timed out) listed page by
-- page. Through (task_id, state, id) every job of such a page was a row
-- lookup of its own, and failures lie apart in the table (one failed job
-- in a thousand: each on a table page of its own), so a page of 100 read
-- about 100 table pages, again from the file after any other connection's
-- commit (SQLite empties a reader's page cache then), and the caches they
-- filled made every reset dearer: 2 ms of CPU a page at 1,000,000 jobs.
-- This index holds every column the lists read, so such a page is a few
-- consecutive index pages. Only failures are in it: a job enters it when
-- it fails and leaves it if retried; the engine's changes to queued, in
-- flight and succeeded jobs never write it, and cancelling a task's queued
-- jobs (cancelled lists are dense) does not either.
CREATE INDEX IF NOT EXISTS jobs_task_failed ON jobs (task_id, state, id, device_id, device, product, module,
    percent, attempt, code, message, phase, from_version, version, created_at, updated_at, started_at, deadline,
    next_attempt_at, sent_at, rev)
    WHERE state IN ('failed', 'rejected', 'timed_out');

-- +goose Down
DROP INDEX jobs_task_failed;
