package cli_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/cli"
	"github.com/otter-ota/otter/internal/server/servertest"
)

// startTaskOtter starts a server with a product demo with devices d1..dN
// that reported 1.0.0, and firmware 1.1.0; it returns the firmware id.
func startTaskOtter(t *testing.T, devices int) (*otter, *fleet, string) {
	t.Helper()
	o := startOtter(t)
	o.ok("product", "create", "demo")
	var csv strings.Builder
	for i := 1; i <= devices; i++ {
		fmt.Fprintf(&csv, "d%d\n", i)
	}
	var imported struct {
		Devices []struct{ Key, Secret string }
	}
	r := o.runIn(csv.String(), "device", "import", "demo", "-", "-o", "json")
	if err := jsonDecode(r.stdout, &imported); r.code != 0 || err != nil || len(imported.Devices) != devices {
		t.Fatalf("device import: %v %s", err, r)
	}
	f := &fleet{url: o.url, secrets: map[string]string{}}
	for _, d := range imported.Devices {
		f.secrets[d.Key] = d.Secret
		f.report(t, d.Key, "1.0.0")
	}
	return o, f, o.firmware("1.1.0")
}

// fleet is the devices of product demo, which report their version over
// the device HTTP API.
type fleet struct {
	url     string
	secrets map[string]string // device key -> secret
}

// report makes a device report the version of its default module.
func (f *fleet) report(t *testing.T, device, version string) {
	t.Helper()
	if err := f.inform(t.Context(), device, version); err != nil {
		t.Fatal(err)
	}
}

// inform is report for goroutines other than the test's: it returns the
// error.
func (f *fleet) inform(ctx context.Context, device, version string) error {
	return servertest.Report(ctx, f.url, "demo", device, f.secrets[device], version)
}

func (o *otter) firmware(version string, flags ...string) string {
	o.t.Helper()
	var fw struct{ ID int64 }
	args := append([]string{"firmware", "add", "--product", "demo", "--version", version, "-f", "-", "-o", "json"}, flags...)
	r := o.runIn("image "+version, args...)
	if r.code != 0 {
		o.t.Fatalf("firmware add: %s", r)
	}
	if err := jsonDecode(r.stdout, &fw); err != nil {
		o.t.Fatal(err)
	}
	return fmt.Sprint(fw.ID)
}

// task is what the CLI's JSON shows of a task.
type task struct {
	ID     int64            `json:"id"`
	Name   string           `json:"name"`
	State  string           `json:"state"`
	Phase  int              `json:"phase"`
	Total  int64            `json:"total"`
	Counts map[string]int64 `json:"counts"`
}

// waitTask polls `task show -o json` until ok holds.
func (o *otter) waitTask(id int64, ok func(task) bool) task {
	o.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got task
		o.json(&got, "task", "show", fmt.Sprint(id))
		if ok(got) {
			return got
		}
		if time.Now().After(deadline) {
			o.t.Fatalf("task %d did not get there: %+v", id, got)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

func TestTaskCommands(t *testing.T) {
	o, s, fw := startTaskOtter(t, 5)

	out := o.ok("task", "create", "--firmware", fw, "--all", "--phases", "20%,100%", "--dry-run")
	if !hasField(out, "would target", "5 devices") || !hasField(out, "per phase", "1 (20%): 1, 2 (100%): 4") {
		t.Errorf("dry run:\n%s", out)
	}
	var preview struct {
		Total   int
		Devices []string
	}
	o.json(&preview, "task", "create", "--firmware", fw, "--all", "--dry-run")
	if preview.Total != 5 || len(preview.Devices) != 5 {
		t.Errorf("dry run -o json: %+v", preview)
	}

	var first task
	r := o.runIn("# canaries\nd1\nd2,site=x\n", "task", "create", "--firmware", fw, "--devices-file", "-", "--name", "canary", "-o", "json")
	if err := jsonDecode(r.stdout, &first); err != nil || r.code != 0 || first.ID == 0 || first.Total != 2 || first.Counts == nil {
		t.Fatalf("task create: %v %+v\n%s", err, first, r)
	}
	r = o.fails(1, "(409 conflict)", "task", "create", "--firmware", fw, "--all")
	if !strings.Contains(r.stderr, "d1 (task 1)") || !strings.Contains(r.stderr, "; --skip-busy leaves the busy devices out") ||
		strings.Count(r.stderr, "d1") != 1 {
		t.Errorf("double-targeting: %s", r)
	}
	var rest task
	o.json(&rest, "task", "create", "--firmware", fw, "--all", "--skip-busy", "--phases", "50%,100%", "--phase-gate", "manual",
		"--retries", "2", "--retry-backoff", "30s", "--timeout", "10m", "--end", "+1h", "--name", "rest")
	if rest.Total != 3 || rest.Name != "rest" {
		t.Errorf("skip-busy task: %+v", rest)
	}

	var list []task
	o.json(&list, "task", "list")
	if len(list) != 2 || list[0].ID != rest.ID {
		t.Errorf("task list (newest first): %+v", list)
	}
	o.json(&list, "task", "list", "--state", "cancelled")
	if len(list) != 0 {
		t.Errorf("task list --state cancelled: %+v", list)
	}

	o.waitTask(rest.ID, func(t task) bool { return t.State == "running" })
	show := o.ok("task", "show", fmt.Sprint(rest.ID))
	for _, want := range [][2]string{
		{"phase", "1 of 2 (50%), manual gate: otter task advance " + fmt.Sprint(rest.ID)},
		{"target", "all devices; busy devices skipped"}, {"retries", "2, backoff 30s doubling"}, {"timeout", "10m0s per job"},
		{"progress", "[..............................] 0% succeeded 0/3, failed 0, queued 3"},
	} {
		if !hasField(show, want[0], want[1]) {
			t.Errorf("task show lacks %s: %s:\n%s", want[0], want[1], show)
		}
	}
	testTaskJobs(t, o, s, first.ID)
	testTaskActions(t, o, rest.ID)
}

func testTaskJobs(t *testing.T, o *otter, s *fleet, id int64) {
	var jobs []map[string]any
	o.json(&jobs, "task", "jobs", fmt.Sprint(id))
	if len(jobs) != 2 {
		t.Fatalf("task jobs: %+v", jobs)
	}
	for _, j := range jobs {
		for _, k := range []string{"device", "state", "percent", "attempt", "code", "message", "updated"} {
			if _, ok := j[k]; !ok {
				t.Errorf("job %v lacks %s", j, k)
			}
		}
	}
	s.report(t, "d1", "1.1.0")
	done := o.waitTask(id, func(t task) bool { return t.Counts["succeeded"] == 1 })
	if done.Counts["queued"]+done.Counts["notified"] != 1 {
		t.Errorf("counts: %v", done.Counts)
	}
	o.json(&jobs, "task", "jobs", fmt.Sprint(id), "--state", "succeeded")
	if len(jobs) != 1 || jobs[0]["device"] != "d1" || jobs[0]["percent"] != 100.0 {
		t.Errorf("task jobs --state succeeded: %+v", jobs)
	}
	o.json(&jobs, "task", "jobs", fmt.Sprint(id), "--limit", "1")
	if len(jobs) != 1 {
		t.Errorf("task jobs --limit 1: %+v", jobs)
	}
	table := o.ok("task", "jobs", fmt.Sprint(id))
	if !regexp.MustCompile(`(?m)^ID +DEVICE +STATE +PERCENT +ATTEMPT +CODE +MESSAGE +UPDATED\n\d+ +d1 +succeeded +100% `).MatchString(table) {
		t.Errorf("task jobs table:\n%s", table)
	}
	testTaskJobsCSV(t, o, id)
}

// -o csv prints the server's export: it parses, and holds the jobs -o json
// lists, field for field.
func testTaskJobsCSV(t *testing.T, o *otter, id int64) {
	var jobs []map[string]any
	o.json(&jobs, "task", "jobs", fmt.Sprint(id))
	rows, err := csv.NewReader(strings.NewReader(o.ok("task", "jobs", fmt.Sprint(id), "-o", "csv"))).ReadAll()
	if err != nil || len(rows) != len(jobs)+1 {
		t.Fatalf("task jobs -o csv: %v %q", err, rows)
	}
	col := make(map[string]int)
	for i, name := range rows[0] {
		col[name] = i
	}
	for i, j := range jobs {
		row := rows[i+1]
		want := map[string]string{"job_id": fmt.Sprint(j["id"]), "device": j["device"].(string), "state": j["state"].(string),
			"attempt": fmt.Sprint(j["attempt"]), "percent": fmt.Sprint(j["percent"]), "to_version": j["version"].(string),
			"from_version": fmt.Sprint(j["from_version"]), "code": fmt.Sprint(j["code"])}
		for k, v := range want {
			if v == "<nil>" {
				v = ""
			}
			if got := row[col[k]]; got != v {
				t.Errorf("job %v: %s = %q, want %q", j["id"], k, got, v)
			}
		}
		if ts, err := time.Parse(time.RFC3339Nano, row[col["updated_at"]]); err != nil || !ts.Equal(mustParse(t, j["updated"].(string))) {
			t.Errorf("job %v: updated_at %q, want %v", j["id"], row[col["updated_at"]], j["updated"])
		}
	}
	o.fails(2, "-o csv is for otter task jobs only", "task", "list", "-o", "csv")
}

func mustParse(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func testTaskActions(t *testing.T, o *otter, id int64) {
	n := fmt.Sprint(id)
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"pause", n}, "task " + n + " is paused, phase 1 of 2 (50%), manual gate"},
		{[]string{"advance", n}, "task " + n + " is paused, phase 2 of 2 (100%)\n"},
		{[]string{"resume", n}, "task " + n + " is running, phase 2 of 2 (100%)\n"},
		{[]string{"retry-failed", n}, "requeued 0 jobs of task " + n + " (running)\n"},
		{[]string{"cancel", n}, "task " + n + " is cancelled, phase 2 of 2 (100%)\n"},
	}
	for _, st := range steps {
		if out := o.ok(append([]string{"task"}, st.args...)...); !strings.HasPrefix(out, st.want) {
			t.Errorf("task %s = %q, want %q", strings.Join(st.args, " "), out, st.want)
		}
	}
	o.fails(1, "(409 conflict)", "task", "advance", n)
	var got task
	o.json(&got, "task", "show", n)
	if got.State != "cancelled" || got.Counts["cancelled"] != 3 {
		t.Errorf("after cancel: %+v", got)
	}
	out := o.ok("task", "watch", n)
	if !regexp.MustCompile(`^\S+Z task ` + n + ` cancelled, phase 2 of 2 \(100%\): \[\.+\] 0% succeeded 0/3, failed 0, cancelled 3\n$`).MatchString(out) {
		t.Errorf("task watch on an ended task:\n%q", out)
	}
	if out := o.ok("task", "list", "--state", "cancelled"); !strings.Contains(out, "rest") || !strings.HasPrefix(out, "ID ") {
		t.Errorf("task list table:\n%s", out)
	}
}

func TestTaskVerifyAndWatch(t *testing.T) {
	o, s, _ := startTaskOtter(t, 3)
	fw := o.firmware("2.0.0", "--verify-required")
	o.fails(1, "must be verified before batch use", "task", "create", "--firmware", fw, "--all")
	var v task
	o.json(&v, "task", "create", "--firmware", fw, "--verify", "--devices", "d1")
	o.waitTask(v.ID, func(t task) bool { return t.State == "running" })

	informed := make(chan error, 1)
	go func() { informed <- s.inform(t.Context(), "d1", "2.0.0") }()
	out := o.ok("task", "watch", fmt.Sprint(v.ID))
	if err := <-informed; err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "completed (every job succeeded: the firmware is verified)") &&
		!strings.Contains(last, "completed: [##############################] 100% succeeded 1/1") {
		t.Errorf("task watch:\n%s", out)
	}
	if len(slices.Compact(lines)) != len(lines) {
		t.Errorf("task watch repeated a line:\n%s", out)
	}
	if show := o.ok("firmware", "get", fw); !hasField(show, "verified", fmt.Sprintf("yes (task %d)", v.ID)) {
		t.Errorf("firmware get after verification:\n%s", show)
	}
	var batch task
	o.json(&batch, "task", "create", "--firmware", fw, "--all")
	if batch.Total != 2 {
		t.Errorf("batch task after verification: %+v", batch)
	}
}

func TestTaskUsageErrors(t *testing.T) {
	o, _, fw := startTaskOtter(t, 1)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"task", "create", "--all"}, "--firmware is required"},
		{[]string{"task", "create", "--firmware", fw, "--all", "--phases", "10%,5%"}, "--phases"},
		{[]string{"task", "create", "--firmware", fw, "--all", "--start", "soon"}, `--start "soon"`},
		{[]string{"task", "show", "x"}, `task id "x": want a positive number`},
		{[]string{"task", "list", "--state", "done"}, `--state "done": want one of scheduled, running`},
		{[]string{"task", "jobs", "1", "--state", "finished"}, `--state "finished": want one of awaiting_version, queued`},
		{[]string{"task", "pause"}, "missing ID"},
		{[]string{"task"}, "missing command: one of advance, cancel, cancel-devices, create, jobs, list, pause, resume, retry-failed, show, update, watch"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			if r := o.run(tt.args...); r.code != cli.ExitUsage || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("want exit 2 and %q; got %s", tt.want, r)
			}
		})
	}
	o.fails(1, "(404 not_found)", "task", "show", "999")
	o.fails(1, "(404 not_found)", "task", "jobs", "999")
	o.fails(1, "(404 not_found)", "task", "create", "--firmware", "999", "--all")
	// The server checks the task's rules and answers each problem.
	o.fails(1, "the target selects no device: set all, devices, tags or from_versions (percent and dynamic only narrow or extend one of these) (400 invalid); give --all, --tags, --from-versions or --devices",
		"task", "create", "--firmware", fw)
	o.fails(1, `target device 2: device key "" is not valid: it is empty`, "task", "create", "--firmware", fw, "--devices", "d1,")
	o.fails(1, "is in the past: give a later end time, or none (400 invalid)", "task", "create", "--firmware", fw, "--all", "--end", "+0s")
	r := o.fails(1, "retry_backoff and retry_on need retries > 0; abort_min needs abort_failure", "task", "create", "--firmware", fw, "--all",
		"--retry-backoff", "1m", "--abort-min", "3")
	if strings.Contains(r.stderr, "body.policy") {
		t.Errorf("the problems are shown twice: %s", r.stderr)
	}
	if out := o.ok("task", "list", "-o", "json"); out != "[]\n" {
		t.Errorf("no tasks: %q", out)
	}
}

func jsonDecode(s string, v any) error { return json.Unmarshal([]byte(s), v) }

// hasField reports whether out has the line "name: value" of a shown
// object, whatever the alignment.
func hasField(out, name, value string) bool {
	return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `: +` + regexp.QuoteMeta(value) + `$`).MatchString(out)
}

// A task held by its start time or its daily window says so, with when it
// resumes in the window's time zone: in JSON (the API's task resource) and
// in `task show`.
func TestTaskShowsWhatItWaitsFor(t *testing.T) {
	o, _, fw := startTaskOtter(t, 2)
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().In(paris)
	window := now.Add(2*time.Hour).Format("15:04") + "-" + now.Add(3*time.Hour).Format("15:04")
	var held task
	o.json(&held, "task", "create", "--firmware", fw, "--devices", "d1", "--window", window, "--tz", "Europe/Paris")
	shown := o.waitWaiting(held.ID)
	w := shown.Waiting
	opens := now.Add(2 * time.Hour).Truncate(time.Minute)
	if shown.State != "running" || w.Reason != "window_closed" || w.TimeZone != "Europe/Paris" || w.Until == nil ||
		w.Until.Sub(opens).Abs() > time.Minute {
		t.Fatalf("waiting %+v (state %s), want window_closed until about %v in Europe/Paris", w, shown.State, opens)
	}
	_, want := opens.Zone()
	if _, offset := w.Until.Zone(); offset != want {
		t.Errorf("until %v is not given in the window's zone", w.Until)
	}
	out := o.ok("task", "show", fmt.Sprint(held.ID))
	if !hasField(out, "waiting", w.Message) || !strings.Contains(w.Message, "outside the daily window "+window+" (Europe/Paris)") {
		t.Errorf("task show of a task outside its window:\n%s", out)
	}

	var later task
	o.json(&later, "task", "create", "--firmware", fw, "--devices", "d2", "--start", "+1h")
	if shown := o.waitWaiting(later.ID); shown.State != "scheduled" || shown.Waiting.Reason != "before_start" {
		t.Fatalf("a task before its start: %+v", shown)
	}
	out = o.ok("task", "show", fmt.Sprint(later.ID))
	if !regexp.MustCompile(`(?m)^waiting: +the task starts at \d{4}-\d\d-\d\d \d\d:\d\d UTC$`).MatchString(out) {
		t.Errorf("task show of a task before its start:\n%s", out)
	}
}

// waitingTask is what the CLI's JSON shows of a held task.
type waitingTask struct {
	State   string `json:"state"`
	Waiting *struct {
		Reason   string     `json:"reason"`
		Until    *time.Time `json:"until"`
		TimeZone string     `json:"time_zone"`
		Message  string     `json:"message"`
	} `json:"waiting"`
}

// waitWaiting polls `task show -o json` until the task says what it waits
// for (the engine plans it within a tick).
func (o *otter) waitWaiting(id int64) waitingTask {
	o.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var got waitingTask
		o.json(&got, "task", "show", fmt.Sprint(id))
		if got.Waiting != nil {
			return got
		}
		if time.Now().After(deadline) {
			o.t.Fatalf("task %d never said what it waits for: %+v", id, got)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

func TestTaskPerDeviceCommands(t *testing.T) {
	o, _, fw := startTaskOtter(t, 3)
	var created task
	o.json(&created, "task", "create", "--firmware", fw, "--all")
	id := fmt.Sprint(created.ID)
	if out := o.ok("task", "cancel-devices", id, "--devices", "d2"); out != "cancelled 1 job of task "+id+" (running)\n" &&
		out != "cancelled 1 job of task "+id+" (scheduled)\n" {
		t.Errorf("cancel-devices: %q", out)
	}
	var jobs []map[string]any
	o.json(&jobs, "task", "jobs", id, "--state", "cancelled")
	if len(jobs) != 1 || jobs[0]["device"] != "d2" {
		t.Errorf("cancelled jobs: %v", jobs)
	}
	if out := o.ok("task", "retry-failed", id, "--devices", "d1"); !strings.HasPrefix(out, "requeued 0 jobs of task "+id) {
		t.Errorf("retry-failed --devices (none failed): %q", out)
	}
	r := o.fails(1, "2 devices have no job in task "+id+": nope1, nope2 (400 invalid)", "task", "cancel-devices", id, "--devices", "nope1,nope2")
	if strings.Count(r.stderr, "nope1") != 1 {
		t.Errorf("the message repeats its list: %s", r.stderr)
	}
	o.fails(2, "name the devices with --devices", "task", "cancel-devices", id)
}

// firmware deprecate and delete: a deprecated firmware takes no new task;
// delete is refused while a task that is not finished uses it, then keeps
// the record, shown as deleted.
func TestFirmwareLifecycleCommands(t *testing.T) {
	o, _, fw := startTaskOtter(t, 2)
	var created task
	o.json(&created, "task", "create", "--firmware", fw, "--devices", "d1")
	if out := o.ok("firmware", "deprecate", fw); !strings.HasPrefix(out, "deprecated firmware "+fw+" (default ") {
		t.Errorf("deprecate: %q", out)
	}
	if !hasField(o.ok("firmware", "get", fw), "status", "deprecated") {
		t.Error("firmware get does not show the deprecation")
	}
	if !regexp.MustCompile(`(?m)^` + fw + ` +demo +default +\S+ +deprecated `).MatchString(o.ok("firmware", "list")) {
		t.Errorf("firmware list:\n%s", o.ok("firmware", "list"))
	}
	o.fails(1, "is deprecated: no new task may use it", "task", "create", "--firmware", fw, "--devices", "d2")
	o.fails(1, "is used by 1 task that is not finished", "firmware", "delete", fw)
	o.ok("task", "cancel", fmt.Sprint(created.ID))
	o.ok("firmware", "delete", fw)
	if !hasField(o.ok("firmware", "get", fw), "status", "deleted") {
		t.Error("firmware get does not show the deletion")
	}
	help := o.ok("firmware", "delete", "--help")
	if !strings.Contains(help, "refuses while a task that is not\nfinished (scheduled, running or paused) uses the firmware") {
		t.Errorf("delete help:\n%s", help)
	}
}
