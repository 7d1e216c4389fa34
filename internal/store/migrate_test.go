package store_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/internal/store/storetest"
)

// TestMigrationCountsAttemptsFromOne: a database written before attempts
// counted from 1 (its jobs at attempt 0, migration 3 not applied) reads
// every job one attempt higher once migrated, new jobs start at 1, and a
// failed job stored at 100% reads 0%.
func TestMigrationCountsAttemptsFromOne(t *testing.T) {
	runURL(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := storetest.OpenURL(t, url)
		task, jobs := rollout(t, s, 3)
		for _, j := range jobs {
			if j.Attempt != 1 {
				t.Fatalf("a new job is at attempt %d, want 1", j.Attempt)
			}
		}
		db := rawDB(t, url)
		for _, stmt := range []string{
			"UPDATE jobs SET attempt = attempt - 1",
			"UPDATE jobs SET attempt = 1 WHERE id = (SELECT MIN(id) FROM jobs)", // retried once, as counted before
			"UPDATE jobs SET state = 'failed', percent = 100 WHERE id = (SELECT MAX(id) FROM jobs)",
			// Later migrations are undone in the record too, or goose calls
			// 3 out of order; they are written to run again, except 6,
			// 8 and 10, whose columns (and 10's index, which 14 moved to a
			// table) go first.
			"ALTER TABLE jobs DROP COLUMN active",
			"CREATE UNIQUE INDEX jobs_one_active ON jobs (device_id, module) WHERE state NOT IN ('succeeded', 'failed', 'rejected', 'timed_out', 'cancelled')",
			"ALTER TABLE firmware DROP COLUMN status",
			"ALTER TABLE devices DROP COLUMN secret_sealed",
			"ALTER TABLE products DROP COLUMN protocol",
			"DELETE FROM goose_db_version WHERE version_id >= 3",
		} {
			if _, err := db.ExecContext(ctx, stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		}
		migrated, _, err := storetest.OpenURL(t, url).ListJobs(ctx, store.JobFilter{TaskID: task.ID}, store.Page{Limit: 10})
		must(t, err)
		first := migrated[0].ID
		for _, j := range migrated {
			first = min(first, j.ID)
		}
		for _, j := range migrated {
			want := 1
			if j.ID == first {
				want = 2
			}
			if j.Attempt != want || j.State == ota.JobFailed && j.Percent != 0 {
				t.Errorf("job %d after the migration: %s %d%% attempt %d, want attempt %d (and 0%% if failed)", j.ID, j.State, j.Percent, j.Attempt, want)
			}
		}
	})
}

// TestMigrationKeepsDeletedDevicesHistory: the job events of a device
// deleted before migration 13 (which took job events out of the index by
// device) are still listed under its key once migrated.
func TestMigrationKeepsDeletedDevicesHistory(t *testing.T) {
	runURL(t, func(t *testing.T, url string) {
		ctx := context.Background()
		s := storetest.OpenURL(t, url)
		_, jobs := rollout(t, s, 2)
		gone := jobs[0]
		var events []ota.Event
		for _, j := range jobs {
			events = append(events, ota.Event{At: time.Now(), Kind: ota.KindJob, Action: "x", Product: j.Product, Device: j.Device, TaskID: j.TaskID, JobID: j.ID})
		}
		_, err := s.Apply(as("engine"), ota.ChangeSet{Events: events})
		must(t, err)
		db := rawDB(t, url)
		for _, stmt := range []string{
			// As migration 13's down step leaves it, with the device
			// deleted before it existed (no former_devices row).
			"DROP INDEX events_device",
			"CREATE INDEX events_device ON events (product, device, id) WHERE device <> ''",
			"DROP TABLE former_devices",
			"DELETE FROM devices WHERE id = " + strconv.FormatInt(gone.DeviceID, 10),
			"DELETE FROM goose_db_version WHERE version_id >= 13",
		} {
			if _, err := db.ExecContext(ctx, stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		}
		evs, _, err := storetest.OpenURL(t, url).ListEvents(ctx, store.EventFilter{Product: gone.Product, Device: gone.Device, Kind: ota.KindJob}, store.Page{Limit: 10})
		must(t, err)
		if len(evs) != 1 || evs[0].JobID != gone.ID {
			t.Errorf("job events of deleted device %s after the migration: %+v, want the one of job %d", gone.Device, evs, gone.ID)
		}
	})
}
