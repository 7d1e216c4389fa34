package ota

import (
	"slices"
	"time"
)

// TaskStates lists every task state in lifecycle order, for stable display.
var TaskStates = []TaskState{TaskScheduled, TaskRunning, TaskPaused, TaskCompleted, TaskCancelled, TaskAborted}

// Valid reports whether s is a known task state.
func (s TaskState) Valid() bool { return slices.Contains(TaskStates, s) }

// TaskAction is something an operator or the engine does to a task.
type TaskAction string

// Task actions. Operators pause, resume and cancel; the engine starts,
// completes and aborts.
const (
	TaskStart    TaskAction = "start"    // engine: scheduled -> running
	TaskPause    TaskAction = "pause"    // operator: running -> paused
	TaskResume   TaskAction = "resume"   // operator: paused -> running
	TaskCancel   TaskAction = "cancel"   // operator: scheduled, running or paused -> cancelled
	TaskComplete TaskAction = "complete" // engine: running or paused -> completed, no job left
	TaskAbort    TaskAction = "abort"    // engine: running or paused -> aborted, by the abort rule
	// TaskReopen runs a completed task again when an operator retries its
	// failed jobs; cancelled and aborted tasks stay ended.
	TaskReopen TaskAction = "reopen" // operator: completed -> running
)

// taskRule says where an action may start and where it leads.
type taskRule struct {
	from []TaskState
	to   TaskState
	verb string // for messages: "task 7 is completed: it cannot be paused"
}

var taskRules = map[TaskAction]taskRule{
	TaskStart:    {[]TaskState{TaskScheduled}, TaskRunning, "started"},
	TaskPause:    {[]TaskState{TaskRunning}, TaskPaused, "paused"},
	TaskResume:   {[]TaskState{TaskPaused}, TaskRunning, "resumed"},
	TaskCancel:   {[]TaskState{TaskScheduled, TaskRunning, TaskPaused}, TaskCancelled, "cancelled"},
	TaskComplete: {[]TaskState{TaskRunning, TaskPaused}, TaskCompleted, "completed"},
	TaskReopen:   {[]TaskState{TaskCompleted}, TaskRunning, "reopened"},
	TaskAbort:    {[]TaskState{TaskRunning, TaskPaused}, TaskAborted, "aborted"},
}

// Apply returns the task after action a at now. Repeating an action whose
// result already holds (pausing a paused task) is not an error: it returns
// the task unchanged and changed=false, so retried requests are harmless.
// An impossible action fails with ECONFLICT (the task's state forbids it)
// or EINVALID (unknown action). Ending a task sets EndedAt and Reason.
func (t Task) Apply(a TaskAction, reason string, now time.Time) (next Task, changed bool, err error) {
	rule, ok := taskRules[a]
	if !ok {
		return t, false, Errorf(EINVALID, "unknown task action %q: use pause, resume or cancel", a)
	}
	if t.State == rule.to {
		return t, false, nil
	}
	if !slices.Contains(rule.from, t.State) {
		return t, false, taskConflict(t, a, rule)
	}
	t.State = rule.to
	if t.StartedAt == nil && rule.to == TaskRunning {
		t.StartedAt = &now
	}
	switch {
	case rule.to.Terminal():
		t.EndedAt = &now
		t.Reason = reason
	case a == TaskReopen:
		t.EndedAt = nil
		t.Reason = ""
	}
	return t, true, nil
}

func taskConflict(t Task, a TaskAction, rule taskRule) error {
	e := Errorf(ECONFLICT, "task %d is %s: it cannot be %s", t.ID, t.State, rule.verb)
	switch {
	case t.State == TaskScheduled && a == TaskPause:
		e.Message += " before it starts; cancel it instead"
	case t.State == TaskRunning && a == TaskResume:
		e.Message += " (it is running)"
	}
	return e
}
