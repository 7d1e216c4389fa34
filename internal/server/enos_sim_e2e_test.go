package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/sim"
)

// enosSimProduct creates a product that accepts EnOS devices.
func (o *otter) enosSimProduct(key string) {
	o.t.Helper()
	if _, err := o.api.CreateProduct(o.ctx(), client.ProductCreate{Key: key, Protocol: sim.ProtocolEnOS}); err != nil {
		o.t.Fatal(err)
	}
}

func speakEnOS(c *sim.Config) { c.Protocol = sim.ProtocolEnOS }

// TestSimulatedEnOSAndOtterDevicesUpgradeInOneTask: the simulator's EnOS
// devices log in, report, take the pushed command, download, check the
// sign and report the new version, beside otter-protocol devices of the
// same product in the same task.
func TestSimulatedEnOSAndOtterDevicesUpgradeInOneTask(t *testing.T) {
	o := start(t)
	ctx, cancel := context.WithCancel(o.ctx())
	defer cancel()
	o.enosSimProduct("legacy")
	fw, _ := o.firmware("legacy", "1.1.0", 200<<10)
	enos := o.fleet(ctx, "legacy", 8, func(c *sim.Config) { speakEnOS(c); c.Prefix = "enos-" })
	own := o.fleet(ctx, "legacy", 4, func(c *sim.Config) { c.Prefix = "otter-" })
	task, err := o.api.CreateTask(ctx, client.TaskCreate{FirmwareID: fw.ID, Mode: client.ModePush, Target: client.Target{All: true}})
	if err != nil {
		t.Fatal(err)
	}
	done := o.waitTask(ctx, task.ID, client.TaskCompleted)
	if done.Counts[client.JobSucceeded] != 12 || done.Total != 12 {
		t.Fatalf("task counts %v total %d, want 12 succeeded", done.Counts, done.Total)
	}
	for name, f := range map[string]*sim.Fleet{"EnOS": enos, "otter": own} {
		// A device counts its success once the server acknowledged its
		// report, which may be just after the task was seen completed.
		o.eventually(func() bool { st := f.Stats(); return st.Succeeded+st.Failed >= int64(st.Devices) }, name+" devices to see their reports acknowledged")
		if st := f.Stats(); st.Versions["1.1.0"] != st.Devices || st.Succeeded != int64(st.Devices) || st.Connected != int64(st.Devices) {
			t.Errorf("%s fleet: %+v, want every device connected and upgraded once", name, st)
		}
	}
}

// TestSimulatedEnOSDevicesFailThenSucceedOnRetry: an install failure is
// reported as EnOS's step -4, which fails the job; the task's retry sends
// the command again and the device then succeeds.
func TestSimulatedEnOSDevicesFailThenSucceedOnRetry(t *testing.T) {
	o := start(t)
	ctx, cancel := context.WithCancel(o.ctx())
	defer cancel()
	o.enosSimProduct("legacy")
	fw, _ := o.firmware("legacy", "1.1.0", 4096)
	f := o.fleet(ctx, "legacy", 3, func(c *sim.Config) { speakEnOS(c); c.FailFirst = 1 })
	task, err := o.api.CreateTask(ctx, client.TaskCreate{FirmwareID: fw.ID, Mode: client.ModePush, Target: client.Target{All: true},
		Policy: client.Policy{Retries: 1, RetryBackoff: client.Duration(10 * time.Millisecond)}})
	if err != nil {
		t.Fatal(err)
	}
	done := o.waitTask(ctx, task.ID, client.TaskCompleted)
	if done.Counts[client.JobSucceeded] != 3 {
		t.Fatalf("task counts %v, want 3 succeeded after a retry each", done.Counts)
	}
	if st := f.Stats(); st.Installs != 6 || st.Failed != 3 || st.Versions["1.1.0"] != 3 {
		t.Fatalf("fleet %+v: want two installs per device, the first failed", st)
	}
}

// TestSimulatedEnOSDevicesAskWithGetversion: in request mode the devices
// ask with getversion; only the listed ones are offered the firmware.
func TestSimulatedEnOSDevicesAskWithGetversion(t *testing.T) {
	o := start(t)
	ctx, cancel := context.WithCancel(o.ctx())
	defer cancel()
	o.enosSimProduct("legacy")
	fw, _ := o.firmware("legacy", "1.1.0", 4096)
	f := o.fleet(ctx, "legacy", 4, func(c *sim.Config) { speakEnOS(c); c.RequestEvery = 200 * time.Millisecond })
	task, err := o.api.CreateTask(ctx, client.TaskCreate{FirmwareID: fw.ID, Mode: client.ModeRequest,
		Target: client.Target{Devices: []string{"sim-00001", "sim-00003"}}})
	if err != nil {
		t.Fatal(err)
	}
	o.waitTask(ctx, task.ID, client.TaskCompleted)
	if st := f.Stats(); st.Versions["1.1.0"] != 2 || st.Versions["1.0.0"] != 2 {
		t.Fatalf("versions %v: want the two listed devices on 1.1.0", st.Versions)
	}
}
