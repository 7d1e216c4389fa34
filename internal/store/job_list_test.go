package store_test

import (
	"cmp"
	"slices"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

// Keyset pages of a task's jobs, with no state, one state and several
// states (merged from one index range per state), come in id order with
// no duplicate and no gap.
func TestListJobsKeysetPages(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := as("engine")
		task, jobs := rollout(t, s, 200)
		now := time.Now().UTC().Truncate(time.Microsecond)
		states := []ota.JobState{ota.JobQueued, ota.JobNotified, ota.JobDownloading}
		var changes []ota.JobUpdate
		for i, j := range jobs {
			if n := j; i%3 != 0 {
				n.State, n.SentAt, n.StartedAt, n.UpdatedAt = states[i%3], &now, &now, now
				changes = append(changes, ota.JobUpdate{Old: j, New: n})
			}
		}
		_, err := s.Apply(ctx, ota.ChangeSet{Jobs: changes})
		must(t, err)
		want := func(keep ...ota.JobState) []int64 {
			var ids []int64
			for i, j := range jobs {
				if len(keep) == 0 || slices.Contains(keep, states[i%3]) {
					ids = append(ids, j.ID)
				}
			}
			return ids
		}
		for _, f := range [][]ota.JobState{nil, {ota.JobNotified}, {ota.JobDownloading, ota.JobQueued}, states, {ota.JobQueued, ota.JobQueued}} {
			var got []int64
			for page := (store.Page{Limit: 7}); ; {
				items, next, err := s.ListJobs(ctx, store.JobFilter{TaskID: task.ID, States: f}, page)
				must(t, err)
				for _, j := range items {
					got = append(got, j.ID)
				}
				if next == "" {
					break
				}
				page.After = next
			}
			if w := want(slices.Compact(slices.Clone(f))...); !slices.Equal(got, w) {
				t.Errorf("states %v: pages gave %d ids %v, want %d in id order %v", f, len(got), got, len(w), w)
			}
		}
	})
}

// Pages of a task's ended jobs (failures read from a covering index on SQLite) hold
// the same jobs, every field alike, as the jobs read one by one, for one
// ended state and several, and after a failed job is retried (it leaves
// the index) and another ends.
func TestListEndedJobs(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := as("engine")
		task, jobs := rollout(t, s, 120)
		now := time.Now().UTC().Truncate(time.Microsecond)
		ended := []ota.JobState{ota.JobQueued, ota.JobSucceeded, ota.JobFailed, ota.JobCancelled, ota.JobDownloading}
		var changes []ota.JobUpdate
		for i, j := range jobs {
			n := j
			n.State, n.UpdatedAt = ended[i%len(ended)], now
			if n.State == ota.JobQueued {
				continue
			}
			n.StartedAt, n.SentAt, n.Percent, n.Attempt = &now, &now, i%100, 1+i%3
			if n.State == ota.JobFailed {
				n.Code, n.Message = "install_failed", "the device said \"no\", in ünïcode"
			}
			changes = append(changes, ota.JobUpdate{Old: j, New: n})
		}
		_, err := s.Apply(ctx, ota.ChangeSet{Jobs: changes})
		must(t, err)
		check := func(when string) {
			t.Helper()
			all, err := s.JobsByID(ctx, ids(jobs, func(j ota.Job) int64 { return j.ID }))
			must(t, err)
			slices.SortFunc(all, func(a, b ota.Job) int { return cmp.Compare(a.ID, b.ID) })
			for _, f := range [][]ota.JobState{{ota.JobFailed}, {ota.JobSucceeded}, {ota.JobSucceeded, ota.JobFailed},
				{ota.JobCancelled, ota.JobFailed, ota.JobSucceeded}, {ota.JobFailed, ota.JobDownloading}, {ota.JobCancelled},
				{ota.JobTimedOut, ota.JobFailed}} {
				var want []ota.Job
				for _, j := range all {
					if slices.Contains(f, j.State) {
						want = append(want, j)
					}
				}
				// Pages of 7 hold a few failed jobs each, pages of 100
				// enough to be read from the covering index.
				for _, limit := range []int{7, 100} {
					var got []ota.Job
					for page := (store.Page{Limit: limit}); ; {
						items, next, err := s.ListJobs(ctx, store.JobFilter{TaskID: task.ID, States: f}, page)
						must(t, err)
						got = append(got, items...)
						if next == "" {
							break
						}
						page.After = next
					}
					if len(want) == 0 || !slices.EqualFunc(got, want, jobsEqual) {
						t.Errorf("%s, states %v, pages of %d: %d jobs, want %d (not none):\n%+v\nwant\n%+v", when, f, limit, len(got), len(want), got, want)
					}
				}
			}
		}
		check("ended")
		all, err := s.JobsByID(ctx, []int64{jobs[2].ID, jobs[1].ID})
		must(t, err)
		slices.SortFunc(all, func(a, b ota.Job) int { return cmp.Compare(a.ID, b.ID) })
		retried, done := all[1], all[0]
		if retried.State != ota.JobFailed || done.State != ota.JobSucceeded {
			t.Fatalf("jobs 2 and 1 are %s and %s", retried.State, done.State)
		}
		r, d := retried, done
		r.State, r.Code, r.Message, r.UpdatedAt = ota.JobQueued, "", "", now.Add(time.Second)
		d.Message, d.UpdatedAt = "noted", now.Add(time.Second)
		_, err = s.Apply(ctx, ota.ChangeSet{Jobs: []ota.JobUpdate{{Old: retried, New: r}, {Old: done, New: d}}})
		must(t, err)
		check("after a retry")
	})
}

func jobsEqual(a, b ota.Job) bool {
	return a.ID == b.ID && a.TaskID == b.TaskID && a.DeviceID == b.DeviceID && a.Device == b.Device &&
		a.Product == b.Product && a.Module == b.Module && a.State == b.State && a.Percent == b.Percent &&
		a.Attempt == b.Attempt && a.Code == b.Code && a.Message == b.Message && a.Phase == b.Phase &&
		a.FromVersion == b.FromVersion && a.Version == b.Version && a.CreatedAt.Equal(b.CreatedAt) &&
		a.UpdatedAt.Equal(b.UpdatedAt) && timesEqual(a.StartedAt, b.StartedAt) && timesEqual(a.Deadline, b.Deadline) &&
		timesEqual(a.NextAttemptAt, b.NextAttemptAt) && timesEqual(a.SentAt, b.SentAt) && a.Rev == b.Rev
}

func timesEqual(a, b *time.Time) bool {
	return a == nil && b == nil || a != nil && b != nil && a.Equal(*b)
}
