package cli

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/otter-ota/otter/client"
)

func TestProgressLine(t *testing.T) {
	tests := []struct {
		total  int64
		counts map[client.JobState]int64
		want   string
	}{
		{10000, map[client.JobState]int64{client.JobSucceeded: 5200, client.JobFailed: 10, client.JobTimedOut: 2, client.JobQueued: 4788},
			"[###############...............] 52% succeeded 5200/10000, failed 12, queued 4788"},
		{0, nil, "[..............................] 0% succeeded 0/0, failed 0"},
		{3, map[client.JobState]int64{client.JobSucceeded: 3}, "[##############################] 100% succeeded 3/3, failed 0"},
		{4, map[client.JobState]int64{client.JobDownloading: 1, client.JobInstalling: 1, client.JobCancelled: 1, client.JobRejected: 1},
			"[..............................] 0% succeeded 0/4, failed 0, rejected 1, cancelled 1, in flight 2"},
		// A dynamic task's jobs can outgrow the total it started with.
		{1, map[client.JobState]int64{client.JobSucceeded: 1, client.JobQueued: 1}, "[###############...............] 50% succeeded 1/2, failed 0, queued 1"},
	}
	for _, tt := range tests {
		if got := progressLine(&client.Task{Total: tt.total, Counts: tt.counts}); got != tt.want {
			t.Errorf("progressLine(%d, %v) =\n  %s\nwant\n  %s", tt.total, tt.counts, got, tt.want)
		}
	}
}

func TestPhaseLine(t *testing.T) {
	tests := []struct {
		phase int
		gate  string
		state client.TaskState
		want  string
	}{
		// The API numbers phases from 1.
		{1, "", client.TaskRunning, "1 of 3 (1%)"},
		{2, "auto", client.TaskRunning, "2 of 3 (10%)"},
		{2, "manual", client.TaskPaused, "2 of 3 (10%), manual gate: otter task advance 7"},
		{3, "manual", client.TaskRunning, "3 of 3 (100%)"},
		{2, "manual", client.TaskCancelled, "2 of 3 (10%)"},
		{9, "", client.TaskRunning, "3 of 3 (100%)"}, // out of range: clamped, never a panic
		{0, "", client.TaskRunning, "1 of 3 (1%)"},
	}
	for _, tt := range tests {
		task := &client.Task{ID: 7, Phase: tt.phase, State: tt.state, Policy: client.Policy{Phases: []float64{1, 10, 100}, PhaseGate: tt.gate}}
		if got := phaseLine(task); got != tt.want {
			t.Errorf("phaseLine(phase %d, %s) = %q, want %q", tt.phase, tt.gate, got, tt.want)
		}
	}
}

func TestWriteTaskShowsEverySetField(t *testing.T) {
	start := time.Date(2026, 3, 10, 13, 0, 0, 0, time.UTC)
	task := &client.Task{
		ID: 7, Name: "spring", Product: "demo", Module: "default", FirmwareID: 3, Version: "1.1.0", Mode: client.ModePush,
		State: client.TaskRunning, Phase: 2, Total: 10, CreatedBy: "ops", CreatedAt: testNow,
		Counts: map[client.JobState]int64{client.JobQueued: 4, client.JobDownloading: 1, client.JobSucceeded: 5},
		Target: client.Target{Tags: map[string]string{"site": "paris"}, Percent: 50, SkipBusy: true},
		Policy: client.Policy{Start: &start, Window: &client.Window{Start: "01:00", End: "05:00", TZ: "Europe/Paris"},
			Rate: 100, RateGrowth: 2, RateGrowthEvery: 50, MaxConcurrent: 20, Phases: []float64{1, 10, 100}, PhaseSuccess: 95,
			Retries: 3, RetryBackoff: client.Duration(time.Minute), RetryOn: []string{"download_failed"},
			Timeout: client.Duration(30 * time.Minute), AbortFailure: 10, AbortMin: 20, Confirm: "install"},
	}
	var b bytes.Buffer
	if err := writeTask(&b, task); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"id:             7\n", "firmware:       3 (demo/default 1.1.0)\n", "state:          running\n",
		"phase:          2 of 3 (10%)\n", "target:         tags site=paris; 50% sample; busy devices skipped\n",
		"start:          2026-03-10T13:00:00Z\n", "window:         01:00-05:00 Europe/Paris daily\n",
		"rate:           100 jobs/min, x2 every 50 successes\n", "max concurrent: 20 jobs in flight\n",
		"phases:         1%,10%,100%\n", "phase success:  95% succeeded before the next phase\n",
		"retries:        3, backoff 1m0s doubling, on download_failed\n", "timeout:        30m0s per job\n",
		"abort:          when 10% of at least 20 finished jobs failed\n", "confirm:        install: devices confirm after the download, before activating\n",
		"jobs:           queued 4, downloading 1, succeeded 5\n",
		"progress:       [###############...............] 50% succeeded 5/10, failed 0, in flight 1, queued 4\n",
		"created:        2026-03-10T12:00:00Z by ops\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("task show lacks %q:\n%s", want, b.String())
		}
	}
	// Unset policy fields are not shown.
	b.Reset()
	if err := writeTask(&b, &client.Task{ID: 1, Target: client.Target{All: true}}); err != nil {
		t.Fatal(err)
	}
	for _, absent := range []string{"phase", "window", "rate", "retries", "timeout", "abort", "confirm"} {
		if strings.Contains(b.String(), "\n"+absent) {
			t.Errorf("a bare task shows %s:\n%s", absent, b.String())
		}
	}
}

func TestWriteTaskCountsDevicesThatHaveNotReported(t *testing.T) {
	task := &client.Task{ID: 2, Total: 5, Target: client.Target{All: true},
		Counts: map[client.JobState]int64{client.JobAwaitingVersion: 3, client.JobSucceeded: 2}}
	var b bytes.Buffer
	if err := writeTask(&b, task); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"awaiting_version 3, succeeded 2\n",
		"not reported: 3 targeted devices have not reported a version yet",
		"[############..................] 40% succeeded 2/5, failed 0, awaiting version 3\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("task show lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	if err := writePreview(&b, &client.TaskPreview{Total: 4, Devices: []string{"a"}, Unreported: 3}, nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "not reported:  3 targeted devices") {
		t.Errorf("dry run does not count the devices that have not reported:\n%s", b.String())
	}
}

func TestWritePreview(t *testing.T) {
	p := &client.TaskPreview{Total: 25, Devices: []string{"a", "b", "c"}, PerPhase: []int{1, 4, 20}, Busy: []string{"x"}, BusyTotal: 1}
	var b bytes.Buffer
	if err := writePreview(&b, p, []float64{1, 10, 100}); err != nil {
		t.Fatal(err)
	}
	want := "would target:   25 devices\nper phase:      1 (1%): 1, 2 (10%): 4, 3 (100%): 20\nbusy, left out: 1 (x)\nrollout order:  a, b, c and 22 more\n"
	if b.String() != want {
		t.Errorf("preview:\n%s\nwant:\n%s", b.String(), want)
	}
}

func TestJobStream(t *testing.T) {
	for _, n := range []int{0, 1, 3} {
		var b bytes.Buffer
		s := newJobStream(&b, true, testNow)
		for i := range n {
			if err := s.add(&client.Job{ID: int64(i + 1), Device: "d<1>", State: client.JobFailed, Code: "x"}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.close(); err != nil {
			t.Fatal(err)
		}
		var jobs []map[string]any
		if err := json.Unmarshal(b.Bytes(), &jobs); err != nil || len(jobs) != n {
			t.Fatalf("%d jobs streamed as %v (%v):\n%s", n, jobs, err, b.String())
		}
		if n > 0 && (!strings.Contains(b.String(), `"device": "d<1>"`) || !strings.Contains(b.String(), "\n  {\n    \"id\": 1,")) {
			t.Errorf("JSON is not indented like the other commands' or escapes HTML:\n%s", b.String())
		}
	}
	var b bytes.Buffer
	s := newJobStream(&b, false, testNow)
	if err := s.add(&client.Job{ID: 1, Device: "d1", State: client.JobSucceeded, Percent: 100, Attempt: 1, UpdatedAt: testNow}); err != nil {
		t.Fatal(err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	want := "ID  DEVICE  STATE      PERCENT  ATTEMPT  CODE  MESSAGE  UPDATED\n1   d1      succeeded  100%     1        -     -        just now\n"
	if b.String() != want {
		t.Errorf("job table:\n%q\nwant\n%q", b.String(), want)
	}
}

func TestWriteTaskShowsDevicesAwaitingConfirmation(t *testing.T) {
	task := &client.Task{ID: 4, Product: "demo", Module: "default", Version: "1.1.0", Mode: client.ModePush,
		State: client.TaskRunning, Total: 3, Policy: client.Policy{Confirm: "install"},
		Counts: map[client.JobState]int64{client.JobAwaitingInstall: 2, client.JobSucceeded: 1}}
	var b bytes.Buffer
	if err := writeTask(&b, task); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"jobs:       awaiting_install_confirmation 2, succeeded 1\n",
		"confirming: 2 downloaded, waiting for the device's local confirmation to install (otter task jobs 4 --state awaiting_install_confirmation)\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("task view lacks %q:\n%s", want, b.String())
		}
	}
}

// `task watch` says what a held task waits for on every line.
func TestWatchLineSaysWhatTheTaskWaitsFor(t *testing.T) {
	task := &client.Task{ID: 3, State: client.TaskRunning, Total: 4, Counts: map[client.JobState]int64{client.JobQueued: 4},
		Waiting: &client.Waiting{Reason: "window_closed", TimeZone: "Europe/Paris",
			Message: "outside the daily window 01:00-05:00 (Europe/Paris): jobs start again at 2026-12-02 01:00 CET"}}
	want := "task 3 running: [..............................] 0% succeeded 0/4, failed 0, queued 4; " +
		"waiting: outside the daily window 01:00-05:00 (Europe/Paris): jobs start again at 2026-12-02 01:00 CET"
	if got := watchLine(task); got != want {
		t.Errorf("watchLine:\n got %q\nwant %q", got, want)
	}
}
