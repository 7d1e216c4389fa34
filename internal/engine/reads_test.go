package engine_test

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/engine/enginetest"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/priority"
	"github.com/otter-ota/otter/internal/store"
)

// limitsStore records the batch size of every read of queued jobs.
type limitsStore struct {
	store.Store
	mu     sync.Mutex
	limits []int
}

func (s *limitsStore) QueuedJobs(ctx context.Context, q ota.QueuedQuery) ([]ota.Job, ota.RolloutPos, error) {
	s.mu.Lock()
	s.limits = append(s.limits, q.Limit)
	s.mu.Unlock()
	return s.Store.QueuedJobs(ctx, q)
}

func (s *limitsStore) seen() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.limits)
}

// While the operator's reads are in flight, job starts go in small batches,
// each after a bounded wait for the reads; a read that never ends slows the
// starts but does not stop them. Once no read is in flight, the batches are
// full again.
func TestJobStartsYieldToReadsInFlight(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reading bool
	}{
		{"reads in flight", true},
		{"no reads", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, 5)
			f.stop()
			reads := new(priority.Reads)
			if tc.reading {
				defer reads.Begin()()
			}
			ls := &limitsStore{Store: f.st}
			f.e, f.stop = enginetest.Start(t, engine.Config{Store: ls, Downlink: f.down, Commands: commandKey, Now: f.clock.Now,
				Logger: slog.New(failOnError{t}), Reads: reads, ReadBatch: 2, ReadWait: time.Millisecond})
			keys := []string{"d1", "d2", "d3", "d4", "d5"}
			f.connect(keys...)
			task := f.task(ota.TaskSpec{Target: ota.Target{Devices: keys}})
			for _, k := range keys {
				f.upgradeOf(k)
			}
			f.waitStarted(task.ID, 5)
			limits := ls.seen()
			if len(limits) == 0 {
				t.Fatal("no read of queued jobs")
			}
			switch {
			case tc.reading && (slices.Max(limits) > 2 || len(limits) < 3):
				t.Fatalf("with reads in flight the queued jobs were read in batches of %v, want at least 3 of at most 2", limits)
			case !tc.reading && limits[0] < 5:
				t.Fatalf("with no read in flight the queued jobs were read in batches of %v, want one of all 5", limits)
			}
		})
	}
}

// waitStarted waits until n of the task's jobs have left the queue.
func (f *fixture) waitStarted(taskID int64, n int) {
	f.t.Helper()
	f.eventually(func() bool {
		started := 0
		for _, j := range f.jobs(taskID) {
			if j.State != ota.JobQueued {
				started++
			}
		}
		return started == n
	}, "the task's jobs to start")
}
