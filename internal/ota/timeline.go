package ota

import (
	"cmp"
	"slices"
	"time"
)

// TimelineSecondsSpan is how long from its start a task's activity is also
// kept per second, for the chart of a rollout that takes seconds; after it
// the timeline is kept per minute only.
const TimelineSecondsSpan = 10 * time.Minute

// TimelineMove says what a job's move between two states adds to its task's
// timeline: a start when it leaves the queue for flight, a success, or a
// failure (failed or timed out). Other moves, and updates that keep the
// state, add nothing (ok is false): a rejection or a cancellation is not a
// failure of the rollout.
func TimelineMove(from, to JobState) (p TimelinePoint, ok bool) {
	switch {
	case from == to:
		return p, false
	case from.Waiting() && to.InFlight():
		p.Started = 1
	case to == JobSucceeded:
		p.Succeeded = 1
	case to == JobFailed || to == JobTimedOut:
		p.Failed = 1
	default:
		return p, false
	}
	return p, true
}

// TaskActivity is one task's point of the timeline.
type TaskActivity struct {
	TaskID int64
	TimelinePoint
}

// Timeline sums what job updates add to their tasks' timelines into one
// point per task and step (a minute, or a second), each update counted at
// the step its job was updated in. Points come in task and time order.
func Timeline(updates []JobUpdate, step time.Duration) []TaskActivity {
	type key struct {
		task int64
		at   time.Time
	}
	points := map[key]*TaskActivity{}
	for _, u := range updates {
		p, ok := TimelineMove(u.Old.State, u.New.State)
		if !ok {
			continue
		}
		k := key{u.New.TaskID, u.New.UpdatedAt.UTC().Truncate(step)}
		q := points[k]
		if q == nil {
			q = &TaskActivity{TaskID: k.task, TimelinePoint: TimelinePoint{Minute: k.at}}
			points[k] = q
		}
		q.Started += p.Started
		q.Succeeded += p.Succeeded
		q.Failed += p.Failed
	}
	out := make([]TaskActivity, 0, len(points))
	for _, p := range points {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b TaskActivity) int {
		return cmp.Or(cmp.Compare(a.TaskID, b.TaskID), a.Minute.Compare(b.Minute))
	})
	return out
}
