package console_test

import (
	"encoding/csv"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/sdk/wire"
)

// firmwareFor uploads a firmware of product through the console and
// returns its id.
func (s *stack) firmwareFor(u *user, product, version string, extra url.Values) string {
	s.t.Helper()
	q := url.Values{"product": {product}, "version": {version}}
	for k, v := range extra {
		q[k] = v
	}
	status, fw := u.uploadFirmware(q, "image "+version)
	if status != http.StatusCreated {
		s.t.Fatalf("upload: %d %v", status, fw)
	}
	return itoa(int64(fw["id"].(float64)))
}

// htmx posts a form as htmx does.
func (u *user) htmx(path string, v url.Values) (int, string) {
	u.t.Helper()
	return u.postRaw(path, v, http.Header{"HX-Request": {"true"}})
}

func TestTaskPreview(t *testing.T) {
	s := newStack(t)
	s.fleet("demo", 20)
	op := s.signedIn(ota.RoleOperator)
	fw := s.firmwareFor(op, "demo", "1.1.0", nil)
	form := func(kv ...string) url.Values {
		v := url.Values{"firmware": {fw}, "mode": {"push"}, "target_all": {"on"}, "tz": {"UTC"}, "phase_gate": {"auto"}}
		for i := 0; i+1 < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return v
	}
	cases := []struct {
		name  string
		form  url.Values
		field string // where the error shows; "" for a good preview, wholeForm in the preview box
		want  string
	}{
		{"everything", form(), "", "20 devices would be upgraded"},
		{"tags", form("tags", "ring=odd"), "", "10 devices would be upgraded"},
		{"phases", form("phases", "10%,50%,100%"), "", "phase 3: 10 devices"},
		{"sample", form("percent", "50"), "", "10 devices would be upgraded"},
		{"device list", form("target_all", "", "devices", "d1, d2\nd3"), "", "3 devices would be upgraded"},
		{"bad number", form("rate", "fast"), "rate", "Enter a whole number"},
		{"bad phases", form("phases", "50%"), "phases", "The last phase is 50%"},
		{"bad duration", form("timeout", "soon"), "timeout", `Invalid duration "soon"`},
		{"bad window", form("window", "25:00-03:00"), "window", "25:00"},
		{"bad zone", form("tz", "Mars/Olympus"), "tz", "Unknown time zone"},
		// Task-rule errors show next to the field their location names.
		{"policy rule", form("rate_growth", "2"), "rate_growth", "rate_growth_every"},
		{"abort rule", form("abort_min", "5"), "abort_min", "abort_min needs abort_failure"},
		{"retry rule", form("retry_backoff", "1m"), "retry_backoff", "need retries"},
		{"no target", form("target_all", ""), "target_all", "The target selects no device"},
		{"unknown device", form("target_all", "", "devices", "d1 nope"), "devices", "nope"},
		{"verification without list", form("verification", "on"), "devices", "explicit device list"},
		{"long name", form("name", strings.Repeat("n", 201)), "name", "Task name is 201 bytes long: at most 200 are allowed"},
		{"no firmware", form("firmware", ""), "firmware", "Choose the firmware"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := op.htmx("/tasks/preview", c.form)
			if status != http.StatusOK {
				t.Fatalf("preview: status %d\n%s", status, text(body))
			}
			if c.field == "" || c.field == wholeForm {
				mustContain(t, c.name, body, c.want)
				if strings.Contains(body, `field-error" id="err-`) && fieldErrorsIn(body) != "" {
					t.Errorf("the form shows field errors: %s", fieldErrorsIn(body))
				}
				if got := strings.Contains(body, `class="error" role="alert"`); got != (c.field == wholeForm) {
					t.Errorf("the preview shows an error for the whole form: %v, want %v", got, !got)
				}
				return
			}
			if !strings.Contains(body, `id="err-`+c.field+`" hx-swap-oob="true"`) {
				t.Errorf("the preview does not update the error slot of %s out of band", c.field)
			}
			wantFieldError(t, c.name, body, c.field, c.want)
		})
	}
}

// TestTaskFormRefusesABadName checks that the task form applies the API's
// rules to the name, in the API's words, next to the name field.
func TestTaskFormRefusesABadName(t *testing.T) {
	s := newStack(t)
	s.fleet("demo", 2)
	op := s.signedIn(ota.RoleOperator)
	fw := s.firmwareFor(op, "demo", "1.1.0", nil)
	for name, want := range map[string]string{
		strings.Repeat("n", 201): "Task name is 201 bytes long: at most 200 are allowed",
		"bell\x07":               "Task name contains control characters",
	} {
		v := url.Values{"firmware": {fw}, "name": {name}, "mode": {"push"}, "target_all": {"on"}, "tz": {"UTC"}, "phase_gate": {"auto"}}
		_, preview := op.htmx("/tasks/preview", v)
		wantFieldError(t, "preview", preview, "name", want)
		status, page := op.post("/tasks", v)
		if status != http.StatusBadRequest {
			t.Errorf("create with name %q: status %d, want 400", name, status)
		}
		wantFieldError(t, "create", page, "name", want)
	}
	if tasks, _, err := s.st.ListTasks(s.ctx, store.TaskFilter{}, store.Page{}); err != nil || len(tasks) != 0 {
		t.Errorf("tasks after refused names: %v, %v", tasks, err)
	}
}

func TestPreviewAndTaskPageCountDevicesThatHaveNotReported(t *testing.T) {
	s := newStack(t)
	s.fleet("demo", 2)
	if _, err := s.st.CreateDevices(s.ctx, []store.NewDevice{
		{Product: "demo", Key: "n1", SecretHash: []byte("x")}, {Product: "demo", Key: "n2", SecretHash: []byte("x")}}); err != nil {
		t.Fatal(err)
	}
	op := s.signedIn(ota.RoleOperator)
	fw := s.firmwareFor(op, "demo", "1.1.0", nil)
	v := url.Values{"firmware": {fw}, "mode": {"push"}, "target_all": {"on"}, "tz": {"UTC"}, "phase_gate": {"auto"}}
	status, body := op.htmx("/tasks/preview", v)
	if status != http.StatusOK {
		t.Fatalf("preview: %d\n%s", status, text(body))
	}
	mustContain(t, "preview", body, "4 devices would be upgraded")
	mustContain(t, "preview", body, "2 of them have not reported a version yet")
	status, body = op.post("/tasks", v)
	if status != http.StatusOK {
		t.Fatalf("create: %d\n%s", status, text(body))
	}
	mustContain(t, "task page", body, "2 targeted devices have not reported a version yet")
}

// wholeForm is where an error about no one field of a form shows: in the
// preview box, or next to the submit button.
const wholeForm = "(form)"

// fieldErrorsIn lists the non-empty error slots of a page.
func fieldErrorsIn(page string) string {
	var out []string
	for _, f := range []string{"firmware", "rate", "phases", "tags", "devices", "target_all", "timeout"} {
		if e := fieldError(page, f); e != "" {
			out = append(out, f+": "+e)
		}
	}
	return strings.Join(out, "; ")
}

func TestCreateTaskWithEveryPolicyField(t *testing.T) {
	s := newStack(t)
	s.fleet("demo", 10)
	op := s.signedIn(ota.RoleOperator)
	fw := s.firmwareFor(op, "demo", "1.1.0", nil)
	_, page := op.get("/tasks/new?firmware=" + fw)
	for _, field := range []string{"rate", "rate_growth", "rate_growth_every", "max_concurrent", "phases", "phase_success",
		"phase_gate", "retries", "retry_backoff", "retry_on", "timeout", "abort_failure", "abort_min", "confirm",
		"start", "end", "window", "tz", "percent", "tags", "from_versions", "devices", "dynamic", "skip_busy", "verification", "mode"} {
		if !strings.Contains(page, `name="`+field+`"`) {
			t.Errorf("the task form has no field %s", field)
		}
	}
	mustContain(t, "defaults", page, "Create task")
	for _, def := range []string{`name="tz" value="UTC"`, `id="t-safety-help"`} {
		if !strings.Contains(page, def) {
			t.Errorf("the new form lacks %s", def)
		}
	}
	body := s.createTaskVia(op, url.Values{
		"firmware": {fw}, "name": {"full"}, "mode": {"request"}, "target_all": {"on"}, "tags": {"ring=even"},
		"from_versions": {"1.0.0"}, "percent": {"100"}, "dynamic": {"on"}, "skip_busy": {"on"},
		"start": {"2030-01-02T03:04"}, "end": {"2030-02-01T00:00"}, "tz": {"Europe/Paris"}, "window": {"01:00-05:00"},
		"rate": {"10"}, "rate_growth": {"2"}, "rate_growth_every": {"5"}, "max_concurrent": {"3"},
		"phases": {"20%, 100%"}, "phase_success": {"90"}, "phase_gate": {"manual"},
		"retries": {"3"}, "retry_backoff": {"30s"}, "retry_on": {"download_failed, timed_out"}, "timeout": {"10m"},
		"abort_failure": {"25"}, "abort_min": {"4"}, "confirm": {"install"},
	})
	mustContain(t, "new task", body, "Task 1: full", "scheduled", "daily 01:00-05:00 Europe/Paris", "10 starts a minute", "at most 3 in flight")
	task, err := s.st.GetTask(s.ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	p, tg := task.Policy, task.Target
	switch {
	case task.Mode != ota.ModeRequest || task.Total != 5:
		t.Errorf("mode %s, total %d", task.Mode, task.Total)
	case p.Start == nil || !p.Start.Equal(mustTime(t, "2030-01-02T02:04:00Z")) || p.End == nil:
		t.Errorf("start %v (want 02:04 UTC: 03:04 in Paris), end %v", p.Start, p.End)
	case p.Window == nil || p.Window.TZ != "Europe/Paris" || p.Rate != 10 || p.RateGrowth != 2 || p.RateGrowthEvery != 5 || p.MaxConcurrent != 3:
		t.Errorf("pace: %+v", p)
	case len(p.Phases) != 2 || p.PhaseSuccess != 90 || p.PhaseGate != ota.GateManual:
		t.Errorf("phases: %+v", p)
	case p.Retries != 3 || p.RetryBackoff != ota.Duration(30e9) || len(p.RetryOn) != 2 || p.Timeout != ota.Duration(600e9):
		t.Errorf("retries: %+v", p)
	case p.AbortFailure != 25 || p.AbortMin != 4 || p.Confirm != ota.ConfirmInstall:
		t.Errorf("abort: %+v", p)
	case !tg.All || tg.Tags["ring"] != "even" || len(tg.FromVersions) != 1 || !tg.Dynamic || !tg.SkipBusy:
		t.Errorf("target: %+v", tg)
	}
}

// A task made from the untouched form has the CLI's policy: no retries, no
// timeout, no abort rule (the form once added them silently).
func TestNewTaskFormStartsFromTheCLIDefaults(t *testing.T) {
	s := newStack(t)
	s.fleet("demo", 3)
	op := s.signedIn(ota.RoleOperator)
	fw := s.firmwareFor(op, "demo", "1.1.0", nil)
	_, page := op.get("/tasks/new?firmware=" + fw)
	for _, field := range []string{"retries", "retry_backoff", "timeout", "abort_failure", "abort_min", "rate", "max_concurrent"} {
		if strings.Contains(page, `name="`+field+`" value="`) && !strings.Contains(page, `name="`+field+`" value=""`) {
			t.Errorf("the new form proposes a value for %s", field)
		}
	}
	// What the browser posts for the untouched form: the checked boxes,
	// the selected options and every text field as rendered.
	form := url.Values{"firmware": {fw}, "mode": {"push"}, "target_all": {"on"}, "phase_gate": {"auto"}}
	for _, m := range regexp.MustCompile(`<input id="[^"]*" name="([a-z_]+)" value="([^"]*)"`).FindAllStringSubmatch(page, -1) {
		form.Set(m[1], html.UnescapeString(m[2]))
	}
	s.createTaskVia(op, form)
	task, err := s.st.GetTask(s.ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if p := task.Policy; p.Retries != 0 || p.RetryBackoff != 0 || p.Timeout != 0 || p.AbortFailure != 0 || p.AbortMin != 0 {
		t.Errorf("a task from the untouched form has policy %+v, want the CLI's defaults", p)
	}
}

func TestCreateTaskErrorsShowNextToTheirFields(t *testing.T) {
	s := newStack(t)
	s.fleet("demo", 2)
	op := s.signedIn(ota.RoleOperator)
	fw := s.firmwareFor(op, "demo", "1.1.0", url.Values{"verify_required": {"true"}})
	status, body := op.post("/tasks", url.Values{"firmware": {fw}, "mode": {"push"}, "target_all": {"on"}, "max_concurrent": {"-1"}})
	if status != http.StatusBadRequest {
		t.Errorf("status %d", status)
	}
	wantFieldError(t, "negative concurrency", body, "max_concurrent", "whole number of 0 or more")
	if !strings.Contains(body, `name="target_all" checked`) {
		t.Errorf("the refused form lost what the operator entered")
	}
	status, body = op.post("/tasks", url.Values{"firmware": {fw}, "mode": {"push"}, "target_all": {"on"}})
	if status != http.StatusConflict {
		t.Errorf("unverified firmware: status %d", status)
	}
	wantFieldError(t, "unverified firmware", body, "firmware", "must be verified before batch use")
	tasks, _, err := s.st.ListTasks(s.ctx, store.TaskFilter{}, store.Page{})
	if err != nil || len(tasks) != 0 {
		t.Errorf("refused forms created tasks: %d %v", len(tasks), err)
	}
}

// TestTaskActionsAndLiveProgress drives a task from its page: the live
// part follows the devices, and each button does what it says.
func TestTaskActionsAndLiveProgress(t *testing.T) {
	s := newStack(t)
	s.fleet("demo", 4)
	op := s.signedIn(ota.RoleOperator)
	fw := s.firmwareFor(op, "demo", "1.1.0", nil)
	s.connect("demo", "d1", "d2", "d3", "d4")
	s.createTaskVia(op, url.Values{"firmware": {fw}, "mode": {"push"}, "target_all": {"on"}, "phases": {"25%,100%"}, "phase_gate": {"manual"}})
	live := func() string {
		_, body := op.get("/tasks/1/live")
		return body
	}
	if body := live(); !strings.Contains(body, `hx-trigger="every 2s"`) {
		t.Fatalf("a running task's live part does not poll:\n%s", body)
	}

	_, body := op.htmx("/tasks/1/pause", nil)
	mustContain(t, "pause", body, "Task paused", "paused", "Resume")
	_, body = op.htmx("/tasks/1/pause?state=queued", nil)
	if !strings.Contains(body, `hx-get="/tasks/1/live?state=queued"`) {
		t.Errorf("the live part forgets the job filter after an action")
	}
	_, body = op.htmx("/tasks/1/resume", nil)
	mustContain(t, "resume", body, "Task resumed", "running", "Pause")
	status, body := op.post("/tasks/1/resume", nil)
	if status != http.StatusOK {
		t.Errorf("a plain post of a repeated resume: %d", status)
	}
	mustContain(t, "plain resume", body, "Task 1", "Task resumed")

	s.fail("demo", firstNotified(t, s, 1), "download_failed")
	eventually(t, "the failure on the live part", func() bool { return strings.Contains(text(live()), "download_failed") })
	_, body = op.htmx("/tasks/1/retry", nil)
	mustContain(t, "retry", body, "1 failed or timed-out job queued again")
	_, body = op.htmx("/tasks/1/advance", nil)
	mustContain(t, "advance", body, "Phase 2 released", "phase 2 of 2")
	_, body = op.htmx("/tasks/1/advance", nil)
	if !strings.Contains(body, `id="action-error"`) {
		t.Errorf("advancing past the last phase shows no error next to the buttons:\n%s", text(body))
	}
	mustContain(t, "advance too far", body, "last phase already")

	for _, d := range []string{"d1", "d2", "d3", "d4"} {
		s.upgradeEventually("demo", d)
	}
	eventually(t, "the task to complete on its page", func() bool {
		b := live()
		return strings.Contains(text(b), "completed") && !strings.Contains(b, "hx-trigger")
	})
	mustContain(t, "completed task", live(), "4 of 4 succeeded")

	s.createTaskVia(op, url.Values{"firmware": {s.firmwareFor(op, "demo", "1.2.0", nil)}, "mode": {"push"}, "target_all": {"on"}})
	_, body = op.htmx("/tasks/2/cancel", nil)
	mustContain(t, "cancel", body, "Task cancelled", "cancelled")
	if _, err := s.eng.Pause(s.ctx, 2); ota.ErrorCode(err) != ota.ECONFLICT {
		t.Errorf("the cancelled task can still be paused: %v", err)
	}
	if status, _ := op.htmx("/tasks/2/explode", nil); status != http.StatusOK {
		t.Errorf("an unknown action through htmx: status %d", status)
	}
	if status, _ := op.post("/tasks/2/explode", nil); status != http.StatusNotFound {
		t.Errorf("an unknown action: status %d, want 404", status)
	}
}

// firstNotified returns a device whose job of the task has been sent.
func firstNotified(t *testing.T, s *stack, task int64) string {
	t.Helper()
	var key string
	eventually(t, "a notified job", func() bool {
		jobs, _, err := s.st.ListJobs(s.ctx, store.JobFilter{TaskID: task, States: []ota.JobState{ota.JobNotified}}, store.Page{})
		if err != nil {
			t.Fatal(err)
		}
		if len(jobs) > 0 {
			key = jobs[0].Device
		}
		return key != ""
	})
	return key
}

// upgradeEventually upgrades a device once its current job is sent.
func (s *stack) upgradeEventually(product, key string) {
	s.t.Helper()
	dev := s.devices[product+"/"+key]
	eventually(s.t, "an active notified job for "+key, func() bool {
		jobs, err := s.st.ActiveJobs(s.ctx, []int64{dev.ID})
		if err != nil {
			s.t.Fatal(err)
		}
		return len(jobs) == 1 && jobs[0].State == ota.JobNotified
	})
	s.upgrade(product, key)
}

// A task with confirm install shows, on its page, the devices that wait
// for their local confirmation after the download, and lists them.
func TestTaskPageShowsDevicesAwaitingConfirmation(t *testing.T) {
	s := newStack(t)
	s.fleet("demo", 2)
	op := s.signedIn(ota.RoleOperator)
	fw := s.firmwareFor(op, "demo", "1.1.0", nil)
	s.connect("demo", "d1", "d2")
	body := s.createTaskVia(op, url.Values{"firmware": {fw}, "mode": {"push"}, "target_all": {"on"}, "confirm": {"install"}})
	mustContain(t, "new task", body, "devices confirm before activating")
	key := firstNotified(t, s, 1)
	var u wire.Upgrade
	eventually(t, "the command", func() bool {
		var ok bool
		u, ok = s.down.LastUpgrade(key)
		return ok
	})
	if !u.ConfirmInstall || u.Confirm {
		t.Fatalf("command confirm=%v confirm_install=%v, want only confirm_install", u.Confirm, u.ConfirmInstall)
	}
	if _, err := s.eng.Progress(s.ctx, s.devices["demo/"+key], wire.Progress{Job: u.Job, Attempt: u.Attempt, State: wire.StateDownloaded}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the waiting device on the task page", func() bool {
		_, b := op.get("/tasks/1/live")
		return strings.Contains(text(b), "1 device has downloaded the firmware and waits for its local confirmation")
	})
	_, body = op.get("/tasks/1?state=awaiting_install_confirmation")
	mustContain(t, "filtered jobs", body, key, "awaiting_install_confirmation")
}

// The task page says what a held task waits for and when it resumes, in
// the zone of its window.
func TestTaskPageSaysWhatTheTaskWaitsFor(t *testing.T) {
	s := newStack(t)
	s.fleet("demo", 2)
	op := s.signedIn(ota.RoleOperator)
	fw := s.firmwareFor(op, "demo", "1.1.0", nil)
	s.createTaskVia(op, url.Values{"firmware": {fw}, "mode": {"push"}, "target_all": {"on"},
		"start": {"2030-01-02T03:04"}, "tz": {"Europe/Paris"}, "window": {"01:00-05:00"}})
	var page string
	eventually(t, "the task page to say what the task waits for", func() bool {
		_, page = op.get("/tasks/1")
		return strings.Contains(page, `id="waiting"`)
	})
	mustContain(t, "task page", page, "Waiting: the task starts at 2030-01-02 03:04 CET")
}

// The task page links to the CSV export, which the console streams from
// the API for any signed-in user.
func TestTaskJobsCSVDownload(t *testing.T) {
	s := newStack(t)
	s.fleet("demo", 3)
	op := s.signedIn(ota.RoleOperator)
	fw := s.firmwareFor(op, "demo", "1.1.0", nil)
	s.createTaskVia(op, url.Values{"firmware": {fw}, "mode": {"push"}, "target_all": {"on"}})
	_, page := op.get("/tasks/1")
	if !strings.Contains(page, `href="/tasks/1/jobs.csv"`) {
		t.Error("the task page has no link to the CSV export")
	}
	viewer := s.signedIn(ota.RoleViewer)
	status, body := viewer.get("/tasks/1/jobs.csv")
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if status != http.StatusOK || err != nil || len(rows) != 4 || rows[0][1] != "device" {
		t.Fatalf("download: %d %v %q", status, err, rows)
	}
	jobs, _, err := s.st.ListJobs(s.ctx, store.JobFilter{TaskID: 1}, store.Page{})
	if err != nil {
		t.Fatal(err)
	}
	for i, j := range jobs {
		if rows[i+1][1] != j.Device || rows[i+1][2] != string(j.State) {
			t.Errorf("row %d %q, job %+v", i+1, rows[i+1], j)
		}
	}
	if status, _ := viewer.get("/tasks/99/jobs.csv"); status != http.StatusNotFound {
		t.Errorf("unknown task: %d", status)
	}
}

// A job's row has a button for its device: cancel a queued job (the others
// go on), and the event names the operator; viewers see no buttons.
func TestTaskPerJobActions(t *testing.T) {
	s := newStack(t)
	s.fleet("demo", 3)
	op := s.signedIn(ota.RoleOperator)
	fw := s.firmwareFor(op, "demo", "1.1.0", nil)
	s.createTaskVia(op, url.Values{"firmware": {fw}, "mode": {"push"}, "target_all": {"on"}})
	_, page := op.get("/tasks/1")
	if !strings.Contains(page, `id="cancel-device-d2"`) || !strings.Contains(page, `name="device" value="d2"`) {
		t.Fatal("a queued job's row has no cancel button")
	}
	status, body := op.post("/tasks/1/cancel-device", url.Values{"device": {"d2"}})
	mustContain(t, "cancel d2", body, "The job of d2 was cancelled.")
	if status != http.StatusOK {
		t.Errorf("cancel-device: %d", status)
	}
	jobs, _, err := s.st.ListJobs(s.ctx, store.JobFilter{TaskID: 1}, store.Page{})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs {
		if want := j.Device == "d2"; (j.State == ota.JobCancelled) != want {
			t.Errorf("%s is %s", j.Device, j.State)
		}
	}
	evs, _, err := s.st.ListEvents(s.ctx, store.EventFilter{Device: "d2", Kind: "job"}, store.Page{})
	if err != nil || len(evs) == 0 || evs[0].Actor == "engine" || evs[0].Actor == "" {
		t.Errorf("events of d2's job: %v %+v", err, evs)
	}
	_, body = op.post("/tasks/1/retry-device", url.Values{"device": {"nosuch"}})
	mustContain(t, "retry an unknown device", body, "1 device has no job in task 1: nosuch")
	viewer := s.signedIn(ota.RoleViewer)
	if _, page := viewer.get("/tasks/1"); strings.Contains(page, `id="cancel-device-`) {
		t.Error("a viewer sees job buttons")
	}
}

// The firmware page deprecates and deletes: a deprecated firmware leaves
// the new-task form, a deleted one keeps its page (version, hash) for the
// task that used it, without its file.
func TestFirmwareDeprecateAndDelete(t *testing.T) {
	s := newStack(t)
	s.fleet("demo", 2)
	op := s.signedIn(ota.RoleOperator)
	fw := s.firmwareFor(op, "demo", "1.1.0", nil)
	s.createTaskVia(op, url.Values{"firmware": {fw}, "mode": {"push"}, "target_all": {"on"}})
	_, page := op.post("/firmware/"+fw+"/deprecate", nil)
	mustContain(t, "deprecated", page, "Status deprecated", "no new task may use it")
	if _, form := op.get("/tasks/new?product=demo"); strings.Contains(form, `<option value="`+fw+`"`) {
		t.Error("the new-task form offers a deprecated firmware")
	}
	if _, list := op.get("/firmware"); !strings.Contains(list, `<span class="state warn">deprecated</span>`) {
		t.Error("the firmware list does not show the deprecation")
	}
	op.post("/tasks/1/cancel", nil)
	status, _ := op.post("/firmware/"+fw+"/delete", nil)
	if status != http.StatusOK {
		t.Errorf("delete: %d", status)
	}
	_, page = op.get("/firmware/" + fw)
	mustContain(t, "deleted", page, "Status deleted", "its file is gone", "1.1.0")
	if strings.Contains(page, `/firmware/`+fw+`/file"`) {
		t.Error("a deleted firmware's page offers its file")
	}
	if status, _ := op.get("/firmware/" + fw + "/file"); status != http.StatusNotFound {
		t.Errorf("the deleted file answers %d", status)
	}
}
