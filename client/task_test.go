package client_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/server/servertest"
)

// taskServer is a server with a product "demo" with devices d1..d4 on
// 1.0.0 and a firmware 1.1.0.
type taskServer struct {
	*testServer
	fw      *client.Firmware
	secrets map[string]string // device key -> secret
}

func startTaskServer(t *testing.T) *taskServer {
	t.Helper()
	s := &taskServer{testServer: startServer(t), secrets: map[string]string{}}
	mustProduct(t, s.admin, "demo")
	for _, k := range []string{"d1", "d2", "d3", "d4"} {
		d, err := s.admin.CreateDevice(ctx(t), "demo", client.DeviceCreate{Key: k})
		if err != nil {
			t.Fatal(err)
		}
		s.secrets[k] = d.Secret
		s.report(t, k, "1.0.0")
	}
	fw, err := s.admin.UploadFirmware(ctx(t), client.FirmwareUpload{Product: "demo", Version: "1.1.0"}, strings.NewReader("image"))
	if err != nil {
		t.Fatal(err)
	}
	s.fw = fw
	return s
}

// report makes a device report the version of its default module.
func (s *taskServer) report(t *testing.T, device, version string) {
	t.Helper()
	if err := servertest.Report(ctx(t), s.url, "demo", device, s.secrets[device], version); err != nil {
		t.Fatal(err)
	}
}

// waitTask polls a task until ok holds.
func (s *taskServer) waitTask(t *testing.T, id int64, ok func(*client.Task) bool) *client.Task {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		task, err := s.admin.Task(ctx(t), id)
		if err != nil {
			t.Fatal(err)
		}
		if ok(task) {
			return task
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %d did not get there: %+v", id, task)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

func TestTaskLifecycle(t *testing.T) {
	s := startTaskServer(t)
	c, ctx := s.admin, ctx(t)
	spec := client.TaskCreate{FirmwareID: s.fw.ID, Name: "first", Target: client.Target{Devices: []string{"d1", "d2"}},
		Policy: client.Policy{Retries: 2, RetryBackoff: client.Duration(30 * time.Second), Phases: []float64{50, 100}}}

	p, err := c.PreviewTask(ctx, spec, client.ListOptions{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if p.Total != 2 || len(p.Devices) != 1 || p.Next == "" || !slices.Equal(p.PerPhase, []int{1, 1}) {
		t.Errorf("preview %+v", p)
	}
	task, err := c.CreateTask(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if task.Name != "first" || task.Total != 2 || task.Mode != client.ModePush || task.Policy.RetryBackoff != client.Duration(30*time.Second) {
		t.Errorf("created %+v", task)
	}
	_, err = c.CreateTask(ctx, client.TaskCreate{FirmwareID: s.fw.ID, Target: client.Target{All: true}})
	ce := wantError(t, err, 409, client.CodeConflict, "leave the busy devices out")
	if !slices.Equal(slices.Sorted(slices.Values(ce.Details)), []string{"d1", "d2"}) {
		t.Errorf("conflict details %v", ce.Details)
	}

	s.waitTask(t, task.ID, func(t *client.Task) bool { return t.State == client.TaskRunning })
	var jobs []client.Job
	for j, err := range c.AllTaskJobs(ctx, task.ID, nil, client.ListOptions{Limit: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	if len(jobs) != 2 || jobs[0].State != client.JobQueued || jobs[0].Version != "1.1.0" {
		t.Fatalf("jobs %+v", jobs)
	}
	s.report(t, jobs[0].Device, "1.1.0")
	s.waitTask(t, task.ID, func(t *client.Task) bool { return t.Counts[client.JobSucceeded] == 1 })
	j, err := c.Job(ctx, jobs[0].ID)
	if err != nil || j.State != client.JobSucceeded || j.Percent != 100 {
		t.Errorf("Job = %+v, %v", j, err)
	}
	hist, err := c.DeviceJobs(ctx, "demo", jobs[0].Device, client.ListOptions{})
	if err != nil || len(hist.Items) != 1 || hist.Items[0].ID != j.ID {
		t.Errorf("DeviceJobs = %+v, %v", hist, err)
	}
	page, err := c.TaskJobs(ctx, task.ID, []client.JobState{client.JobSucceeded}, client.ListOptions{})
	if err != nil || len(page.Items) != 1 {
		t.Errorf("TaskJobs(succeeded) = %+v, %v", page, err)
	}
	testTaskActions(t, c, task.ID)
}

func testTaskActions(t *testing.T, c *client.Client, id int64) {
	ctx := ctx(t)
	steps := []struct {
		name string
		do   func() (*client.Task, error)
		want client.TaskState
	}{
		{"pause", func() (*client.Task, error) { return c.PauseTask(ctx, id) }, client.TaskPaused},
		{"resume", func() (*client.Task, error) { return c.ResumeTask(ctx, id) }, client.TaskRunning},
		{"cancel", func() (*client.Task, error) { return c.CancelTask(ctx, id) }, client.TaskCancelled},
	}
	for _, st := range steps {
		got, err := st.do()
		if err != nil || got.State != st.want {
			t.Fatalf("%s: %+v, %v", st.name, got, err)
		}
	}
	_, err := c.AdvanceTask(ctx, id)
	wantError(t, err, 409, client.CodeConflict, "")
	// A cancelled task stays ended: its failures go in a new task.
	_, err = c.RetryFailed(ctx, id)
	wantError(t, err, 409, client.CodeConflict, "cannot be retried")
	list, err := c.ListTasks(ctx, client.TaskFilter{States: []client.TaskState{client.TaskCancelled}}, client.ListOptions{})
	if err != nil || len(list.Items) != 1 || list.Items[0].ID != id {
		t.Errorf("ListTasks(cancelled) = %+v, %v", list, err)
	}
	for _, err := range c.AllTasks(ctx, client.TaskFilter{Product: "other"}, client.ListOptions{}) {
		t.Errorf("AllTasks(product other) yielded a task (err %v)", err)
	}
	_, err = c.Task(ctx, 999999)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 404 {
		t.Errorf("Task(999999) = %v", err)
	}
}
