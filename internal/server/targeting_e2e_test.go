package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/sim"
	"github.com/otter-ota/otter/sdk/device"
)

// End-to-end tests of who a task targets and when: devices that have never
// reported a version, successes reported after a job ended, and dynamic
// tasks taking devices as they come to match.

// register creates devices that never connect (a factory-provisioned
// fleet) and returns their keys.
func (o *otter) register(ctx context.Context, product string, keys ...string) []string {
	o.t.Helper()
	for _, k := range keys {
		if _, err := o.api.CreateDevice(ctx, product, client.DeviceCreate{Key: k}); err != nil {
			o.t.Fatalf("create device %s: %v", k, err)
		}
	}
	return keys
}

func simKeys(prefix string, n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s%05d", prefix, i+1)
	}
	return keys
}

func TestDevicesThatNeverReportedAreTargetedAndWaitForTheirVersion(t *testing.T) {
	o := start(t)
	ctx, cancel := context.WithCancel(o.ctx())
	defer cancel()
	fw, _ := o.firmware("demo", "1.1.0", 4096)
	// 20 registered devices, none connected yet: 19 will run 1.0.0, one
	// runs 1.2.0, which this firmware does not upgrade.
	keys := o.register(ctx, "demo", append(simKeys("sim-", 19), "odd-00001")...)

	tc := client.TaskCreate{FirmwareID: fw.ID, Mode: client.ModePush, Target: client.Target{Devices: keys}}
	p, err := o.api.PreviewTask(ctx, tc, client.ListOptions{})
	if err != nil || p.Total != 20 || p.Unreported != 20 {
		t.Fatalf("dry run: %+v, %v; want 20 devices, 20 not reported", p, err)
	}
	task := o.create(ctx, tc)
	if task.Total != 20 || task.Counts[client.JobAwaitingVersion] != 20 {
		t.Fatalf("task of 20 unreported devices: total %d counts %v; want 20 awaiting_version", task.Total, task.Counts)
	}

	o.fleet(ctx, "demo", 19, nil)
	key, err := o.api.SigningKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.Start(ctx, sim.Config{API: o.api, Broker: o.srv.MQTTURL(), PublicKey: key.PublicKey,
		Product: "demo", Devices: 1, Prefix: "odd-", Version: "1.2.0"}); err != nil {
		t.Fatal(err)
	}
	o.waitTask(ctx, task.ID, client.TaskCompleted)
	done, jobs := o.settled(ctx, task.ID)
	if done.Counts[client.JobSucceeded] != 19 || done.Counts[client.JobCancelled] != 1 {
		t.Fatalf("counts %v; want 19 succeeded and 1 cancelled", done.Counts)
	}
	for _, j := range jobs {
		if j.Device == "odd-00001" && (j.Code != "version_not_eligible" || j.FromVersion != "1.2.0") {
			t.Fatalf("job of the device on 1.2.0: %+v; want cancelled with code version_not_eligible", j)
		}
	}

	// --all over a product whose devices have all never reported is a task
	// of them all, not "no device matches"; cancelling it cancels them.
	fw2, _ := o.firmware("fresh", "1.1.0", 4096)
	o.register(ctx, "fresh", "f1", "f2", "f3")
	all := o.create(ctx, client.TaskCreate{FirmwareID: fw2.ID, Target: client.Target{All: true}})
	if all.Total != 3 || all.Counts[client.JobAwaitingVersion] != 3 {
		t.Fatalf("--all over unreported devices: total %d counts %v; want 3 awaiting_version", all.Total, all.Counts)
	}
	if _, err := o.api.CancelTask(ctx, all.ID); err != nil {
		t.Fatal(err)
	}
	cancelled, _ := o.settled(ctx, all.ID)
	if cancelled.State != client.TaskCancelled || cancelled.Counts[client.JobCancelled] != 3 {
		t.Fatalf("after cancel: %s %v; want cancelled with 3 cancelled jobs", cancelled.State, cancelled.Counts)
	}
}

func TestSuccessReportedAfterATimeoutIsRecorded(t *testing.T) {
	o := start(t)
	ctx, cancel := context.WithCancel(o.ctx())
	defer cancel()
	if _, err := o.api.CreateProduct(ctx, client.ProductCreate{Key: "demo"}); err != nil {
		t.Fatal(err)
	}
	fw, err := o.api.UploadFirmware(ctx, client.FirmwareUpload{Product: "demo", Version: "1.1.0", VerifyRequired: true},
		strings.NewReader(strings.Repeat("late ", 1000)))
	if err != nil {
		t.Fatal(err)
	}
	ob := newObserver()
	// Installing takes 2 s; the job timeout is 1 s.
	o.fleet(ctx, "demo", 3, func(c *sim.Config) {
		c.InstallTime = 2 * time.Second
		c.OnEvent = ob.event
	})
	timeout := client.Policy{Timeout: client.Duration(time.Second)}

	// The verification task's jobs time out, then its devices run the new
	// version: the jobs succeed late, and the firmware is verified.
	verify := o.create(ctx, client.TaskCreate{FirmwareID: fw.ID, Verification: true, Policy: timeout,
		Target: client.Target{Devices: []string{"sim-00001", "sim-00002"}}})
	o.eventually(func() bool {
		got, err := o.api.Firmware(ctx, fw.ID)
		return err == nil && got.VerifiedBy == verify.ID
	}, "the firmware to be verified by the devices that run it")
	done, jobs := o.settled(ctx, verify.ID)
	if done.Counts[client.JobSucceeded] != 2 || !strings.Contains(done.Reason, "verified") || strings.Contains(done.Reason, "not verified") {
		t.Fatalf("verification task: counts %v reason %q; want 2 succeeded and the firmware verified", done.Counts, done.Reason)
	}
	late := 0
	for _, e := range o.events(ctx, client.EventFilter{Kind: "job", Task: verify.ID}) {
		if e.Action == "timed_out" {
			late++
		}
	}
	if late != 2 {
		t.Fatalf("%d timed_out events, want 2: the jobs must have timed out before they succeeded (jobs %+v)", late, jobs)
	}

	// A batch task times out the same way; once its device reports the
	// target, retry-failed has nothing to send again.
	batch := o.create(ctx, client.TaskCreate{FirmwareID: fw.ID, Policy: timeout, Target: client.Target{Devices: []string{"sim-00003"}}})
	o.eventually(func() bool {
		task := o.taskNow(ctx, batch.ID)
		return task.State == client.TaskCompleted && task.Counts[client.JobSucceeded] == 1
	}, "the batch job to succeed late")
	r, err := o.api.RetryFailed(ctx, batch.ID)
	if err != nil || r.Requeued != 0 {
		t.Fatalf("retry-failed after the late success: %+v, %v; want nothing requeued", r, err)
	}
	o.holds(func() (bool, string) {
		n := ob.count(device.EventUpgrade, "sim-00003")
		return n == 1, fmt.Sprintf("sim-00003 received %d upgrade commands", n)
	}, "a device on the target version is never sent the upgrade again")
}

func TestDynamicTaskTakesDevicesWhenTheyComeToMatch(t *testing.T) {
	o := start(t)
	ctx, cancel := context.WithCancel(o.ctx())
	defer cancel()
	fw, _ := o.firmware("demo", "1.1.0", 4096)
	// Every device fails its first install.
	o.fleet(ctx, "demo", 2, func(c *sim.Config) { c.FailFirst = 1 })
	task := o.create(ctx, client.TaskCreate{FirmwareID: fw.ID,
		Target: client.Target{Tags: map[string]string{"ring": "beta"}, Dynamic: true}})
	if task.Total != 0 {
		t.Fatalf("dynamic task over no tagged device: total %d, want 0", task.Total)
	}
	total := func(want int64, after string) {
		t.Helper()
		if got := o.taskNow(ctx, task.ID); got.Total != want {
			t.Fatalf("after %s: task total %d (counts %v), want %d", after, got.Total, got.Counts, want)
		}
	}

	// Tagging an online device adds it at once: the change answers after
	// the job is stored. Its first install fails.
	if _, err := o.api.SetDeviceTags(ctx, "demo", "sim-00001", map[string]string{"ring": "beta"}); err != nil {
		t.Fatal(err)
	}
	total(1, "tagging sim-00001")
	o.eventually(func() bool { return o.taskNow(ctx, task.ID).Counts[client.JobFailed] == 1 }, "the job of sim-00001 to fail")

	// A device that does not match stays out; one whose job in the task
	// ended joins once, not again.
	for _, tags := range []map[string]string{{"ring": "beta", "site": "b"}, {"ring": "beta"}} {
		if _, err := o.api.SetDeviceTags(ctx, "demo", "sim-00001", tags); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := o.api.SetDeviceTags(ctx, "demo", "sim-00002", map[string]string{"ring": "alpha"}); err != nil {
		t.Fatal(err)
	}
	total(1, "re-tagging a member and tagging a device that does not match")

	// Created devices join, single or imported, awaiting their version.
	if _, err := o.api.CreateDevice(ctx, "demo", client.DeviceCreate{Key: "new-1", Tags: map[string]string{"ring": "beta"}}); err != nil {
		t.Fatal(err)
	}
	total(2, "creating new-1")
	if _, err := o.api.ImportDevices(ctx, "demo", strings.NewReader("new-2,ring=beta\nnew-3,ring=alpha\nnew-4,ring=beta\n")); err != nil {
		t.Fatal(err)
	}
	total(4, "importing new-2 and new-4")
	got := o.taskNow(ctx, task.ID)
	checkCounts(t, got, o.jobs(ctx, task.ID))
	if got.Counts[client.JobAwaitingVersion] != 3 {
		t.Fatalf("counts %v, want the 3 created devices awaiting their version", got.Counts)
	}
}
