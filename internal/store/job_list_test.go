package store_test

import (
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
