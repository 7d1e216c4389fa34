-- +goose Up
-- A task's ended jobs of one state (its failed jobs, say) listed page by
-- page. Through (task_id, state, id) every job of such a page was a row
-- lookup of its own, and ended jobs lie apart in the table (one failed job
-- in a thousand: each on a table page of its own), so a page of 100 read
-- about 100 table pages, from the file again after any other connection's
-- commit (SQLite empties a reader's page cache then): 2 ms of CPU a page at
-- 1,000,000 jobs. This index holds every column the lists read, so such a
-- page is a few consecutive index pages. Only ended jobs are in it: a job
-- enters it once, when it ends, and leaves it only if retried; the engine's
-- changes to queued and in-flight jobs never touch it.
CREATE INDEX IF NOT EXISTS jobs_task_ended ON jobs (task_id, state, id, device_id, device, product, module,
    percent, attempt, code, message, phase, from_version, version, created_at, updated_at, started_at, deadline,
    next_attempt_at, sent_at, rev)
    WHERE state IN ('succeeded', 'failed', 'rejected', 'timed_out', 'cancelled');

-- +goose Down
DROP INDEX jobs_task_ended;
