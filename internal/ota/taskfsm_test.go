package ota

import (
	"testing"
	"time"
)

func TestTaskApply(t *testing.T) {
	tests := []struct {
		from    TaskState
		action  TaskAction
		want    TaskState
		changed bool
		code    string
		msg     string
	}{
		{TaskScheduled, TaskStart, TaskRunning, true, "", ""},
		{TaskRunning, TaskPause, TaskPaused, true, "", ""},
		{TaskPaused, TaskResume, TaskRunning, true, "", ""},
		{TaskScheduled, TaskCancel, TaskCancelled, true, "", ""},
		{TaskRunning, TaskCancel, TaskCancelled, true, "", ""},
		{TaskPaused, TaskCancel, TaskCancelled, true, "", ""},
		{TaskRunning, TaskComplete, TaskCompleted, true, "", ""},
		{TaskPaused, TaskComplete, TaskCompleted, true, "", ""},
		{TaskRunning, TaskAbort, TaskAborted, true, "", ""},
		{TaskPaused, TaskAbort, TaskAborted, true, "", ""},
		{TaskCompleted, TaskReopen, TaskRunning, true, "", ""},
		{TaskCancelled, TaskReopen, TaskCancelled, false, ECONFLICT, "task 7 is cancelled: it cannot be reopened"},
		{TaskAborted, TaskReopen, TaskAborted, false, ECONFLICT, "task 7 is aborted: it cannot be reopened"},
		// Repeats are harmless.
		{TaskRunning, TaskStart, TaskRunning, false, "", ""},
		{TaskPaused, TaskPause, TaskPaused, false, "", ""},
		{TaskRunning, TaskResume, TaskRunning, false, "", ""},
		{TaskCancelled, TaskCancel, TaskCancelled, false, "", ""},
		{TaskCompleted, TaskComplete, TaskCompleted, false, "", ""},
		{TaskAborted, TaskAbort, TaskAborted, false, "", ""},
		// Impossible ones.
		{TaskCompleted, TaskPause, TaskCompleted, false, ECONFLICT, "task 7 is completed: it cannot be paused"},
		{TaskCancelled, TaskResume, TaskCancelled, false, ECONFLICT, "task 7 is cancelled: it cannot be resumed"},
		{TaskAborted, TaskCancel, TaskAborted, false, ECONFLICT, "task 7 is aborted: it cannot be cancelled"},
		{TaskCompleted, TaskStart, TaskCompleted, false, ECONFLICT, "task 7 is completed: it cannot be started"},
		{TaskScheduled, TaskPause, TaskScheduled, false, ECONFLICT, "task 7 is scheduled: it cannot be paused before it starts; cancel it instead"},
		{TaskScheduled, TaskResume, TaskScheduled, false, ECONFLICT, "task 7 is scheduled: it cannot be resumed"},
		{TaskScheduled, TaskComplete, TaskScheduled, false, ECONFLICT, "task 7 is scheduled: it cannot be completed"},
		{TaskScheduled, TaskAbort, TaskScheduled, false, ECONFLICT, "task 7 is scheduled: it cannot be aborted"},
		{TaskPaused, TaskStart, TaskPaused, false, ECONFLICT, "task 7 is paused: it cannot be started"},
		{TaskCancelled, TaskComplete, TaskCancelled, false, ECONFLICT, "task 7 is cancelled: it cannot be completed"},
		{TaskRunning, "explode", TaskRunning, false, EINVALID, `unknown task action "explode": use pause, resume or cancel`},
	}
	now := t0.Add(time.Hour)
	for _, tt := range tests {
		task := Task{ID: 7, State: tt.from}
		got, changed, err := task.Apply(tt.action, "because", now)
		if got.State != tt.want || changed != tt.changed || ErrorCode(err) != tt.code || err != nil && err.Error() != tt.msg {
			t.Errorf("%s + %s = %s, %v, %v; want %s, %v, %s %q", tt.from, tt.action, got.State, changed, err, tt.want, tt.changed, tt.code, tt.msg)
		}
	}
}

func TestTaskApplyTimes(t *testing.T) {
	task := Task{ID: 1, State: TaskScheduled}
	start := t0
	task, _, _ = task.Apply(TaskStart, "", start)
	task, _, _ = task.Apply(TaskPause, "", start.Add(time.Minute))
	task, _, _ = task.Apply(TaskResume, "", start.Add(2*time.Minute))
	if task.StartedAt == nil || !task.StartedAt.Equal(start) || task.EndedAt != nil {
		t.Fatalf("after resume: StartedAt %v EndedAt %v, want %v and nil", task.StartedAt, task.EndedAt, start)
	}
	end := start.Add(time.Hour)
	task, _, _ = task.Apply(TaskAbort, "12 of 40 jobs failed", end)
	if task.EndedAt == nil || !task.EndedAt.Equal(end) || task.Reason != "12 of 40 jobs failed" {
		t.Fatalf("after abort: EndedAt %v Reason %q", task.EndedAt, task.Reason)
	}
}

func TestTaskStateValid(t *testing.T) {
	for _, s := range TaskStates {
		if !s.Valid() {
			t.Errorf("%s is not Valid", s)
		}
	}
	if TaskState("done").Valid() {
		t.Error(`"done" is Valid`)
	}
}
