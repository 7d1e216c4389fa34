package ota

import (
	"slices"
	"testing"
	"time"
)

// Which job moves count as a start, a success or a failure of a rollout.
func TestTimelineMove(t *testing.T) {
	tests := []struct {
		name     string
		from, to JobState
		want     TimelinePoint
		ok       bool
	}{
		{"pushed", JobQueued, JobNotified, TimelinePoint{Started: 1}, true},
		{"offered after its version came", JobAwaitingVersion, JobOffered, TimelinePoint{Started: 1}, true},
		{"queued while awaiting its version", JobAwaitingVersion, JobQueued, TimelinePoint{}, false},
		{"progress in flight", JobNotified, JobDownloading, TimelinePoint{}, false},
		{"succeeded", JobRebooting, JobSucceeded, TimelinePoint{Succeeded: 1}, true},
		{"succeeded late, from timed out", JobTimedOut, JobSucceeded, TimelinePoint{Succeeded: 1}, true},
		{"failed", JobDownloading, JobFailed, TimelinePoint{Failed: 1}, true},
		{"timed out", JobNotified, JobTimedOut, TimelinePoint{Failed: 1}, true},
		{"rejected is no failure", JobOffered, JobRejected, TimelinePoint{}, false},
		{"cancelled is no failure", JobQueued, JobCancelled, TimelinePoint{}, false},
		{"retried", JobFailed, JobQueued, TimelinePoint{}, false},
		{"same state (percent only)", JobDownloading, JobDownloading, TimelinePoint{}, false},
		{"same state, succeeded again", JobSucceeded, JobSucceeded, TimelinePoint{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := TimelineMove(tt.from, tt.to)
			if got != tt.want || ok != tt.ok {
				t.Errorf("TimelineMove(%s, %s) = %+v, %v; want %+v, %v", tt.from, tt.to, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// A batch's updates sum into one point per task and step, in task and time
// order; moves that count for nothing make no point.
func TestTimeline(t *testing.T) {
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	update := func(task int64, at time.Duration, from, to JobState) JobUpdate {
		return JobUpdate{Old: Job{TaskID: task, State: from}, New: Job{TaskID: task, State: to, UpdatedAt: t0.Add(at)}}
	}
	updates := []JobUpdate{
		update(2, 1500*time.Millisecond, JobQueued, JobNotified),
		update(1, 70*time.Second, JobInstalling, JobFailed),
		update(1, 2*time.Second, JobQueued, JobNotified),
		update(1, 2500*time.Millisecond, JobQueued, JobOffered),
		update(1, 59*time.Second, JobRebooting, JobSucceeded),
		update(1, 3*time.Second, JobNotified, JobDownloading), // counts for nothing
	}
	point := func(task int64, at time.Duration, started, succeeded, failed int64) TaskActivity {
		return TaskActivity{TaskID: task, TimelinePoint: TimelinePoint{Minute: t0.Add(at), Started: started, Succeeded: succeeded, Failed: failed}}
	}
	tests := []struct {
		step time.Duration
		want []TaskActivity
	}{
		{time.Minute, []TaskActivity{
			point(1, 0, 2, 1, 0), point(1, time.Minute, 0, 0, 1), point(2, 0, 1, 0, 0),
		}},
		{time.Second, []TaskActivity{
			point(1, 2*time.Second, 2, 0, 0), point(1, 59*time.Second, 0, 1, 0), point(1, 70*time.Second, 0, 0, 1),
			point(2, time.Second, 1, 0, 0),
		}},
	}
	for _, tt := range tests {
		if got := Timeline(updates, tt.step); !slices.Equal(got, tt.want) {
			t.Errorf("Timeline(step %s) =\n%+v\nwant\n%+v", tt.step, got, tt.want)
		}
	}
}
