-- +goose Up
-- A task's failed jobs (failed, rejected or timed out) listed page by
-- page, as SQLite's migration 00009 has them: failures lie apart in the
-- table (one in a thousand: each on a table page of its own), so a page of
-- 100 read about 100 table pages through (task_id, state, id). With 128 MB
-- of shared buffers and 1,000,000 jobs those pages mostly come from the
-- operating system's cache, evicting others: about 1.5 ms of the
-- database's CPU a page (BENCHMARKS.md), against 0.9 ms for a page of
-- queued jobs, which lie together. This index holds every column the
-- lists read, so such a page is an index-only scan of a few index pages
-- (once the table's pages are all-visible, as (auto)vacuum leaves them).
-- Only failures are in it: a state change that is no failure leaves it
-- untouched (every state change already writes jobs_task_state). The
-- widest entry (a 1,024-byte message, 64-byte keys and code, 128-byte
-- versions) stays under a B-tree entry's limit of about 2,700 bytes.
-- IF NOT EXISTS: the migration test runs later migrations again.
CREATE INDEX IF NOT EXISTS jobs_task_failed ON jobs (task_id, state, id) INCLUDE (device_id, device, product, module,
    percent, attempt, code, message, phase, from_version, version, created_at, updated_at, started_at, deadline,
    next_attempt_at, sent_at, rev)
    WHERE state IN ('failed', 'rejected', 'timed_out');

-- +goose Down
DROP INDEX IF EXISTS jobs_task_failed;
