-- +goose Up
-- SQLite's migration 00009 adds jobs_task_failed, an index that covers the
-- pages of a task's failed jobs, because a SQLite reader reads every table
-- page of such a page again after any other connection's commit.
-- PostgreSQL keeps its pages in shared buffers across commits: a page of
-- 100 failed jobs costs it about 1 ms of CPU through (task_id, state, id)
-- and the table (BENCHMARKS.md), so it gets no second copy of the ended
-- jobs to write. This migration keeps the two schemas' versions in step.
-- (Measured later with the database's own CPU, that page cost it 1.5 ms
-- where a page of queued jobs cost 0.9: migration 00012 adds the index.)
SELECT 1;

-- +goose Down
SELECT 1;
