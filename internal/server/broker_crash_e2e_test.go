package server_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/brokeradmin/dynsec/mosquittotest"
	"github.com/otter-ota/otter/sdk/wire"
)

// TestAnUplinkOtterDiesOnIsDeliveredAgain kills otter (SIGKILL) after the
// external broker delivered it a device's message and before otter could
// store it: the broker keeps the message in otter's session and delivers
// it again when otter comes back under the same client id, and it takes
// effect exactly once, also when the device sends it once more.
func TestAnUplinkOtterDiesOnIsDeliveredAgain(t *testing.T) {
	b := mosquittotest.Start(t)
	db := clusterDB(t)
	bin := buildOtter(t)
	dir := t.TempDir()
	httpAddr := freeAddr(t)
	p := &serverProcess{
		t: t, bin: bin, logPath: filepath.Join(dir, "otter.log"), httpURL: "http://" + httpAddr,
		args: []string{"serve", "--data", filepath.Join(dir, "data"), "--http", httpAddr, "--db", db,
			"--broker", brokerURL(b), "--broker-admin", "dynsec", "--broker-client-id", randomID("otter-crash-")},
	}
	t.Cleanup(p.stop)
	p.start() // ready: subscribed at the broker
	api := client.New(p.httpURL, crashToken)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	if _, err := api.CreateProduct(ctx, client.ProductCreate{Key: "demo"}); err != nil {
		t.Fatal(err)
	}
	dev, err := api.CreateDevice(ctx, "demo", client.DeviceCreate{Key: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	fw, err := api.UploadFirmware(ctx, client.FirmwareUpload{Product: "demo", Version: "1.1.0"}, strings.NewReader("new image"))
	if err != nil {
		t.Fatal(err)
	}
	d := dialExt(t, b, "demo", "d1", dev.Secret)
	d.publish(wire.Inform{Modules: map[string]string{"default": "1.0.0"}})
	waitFor(t, func() bool {
		got, err := api.Device(ctx, "demo", "d1")
		return err == nil && got.Versions["default"] == "1.0.0"
	}, "d1's version")
	task, err := api.CreateTask(ctx, client.TaskCreate{FirmwareID: fw.ID, Target: client.Target{Devices: []string{"d1"}}})
	if err != nil {
		t.Fatal(err)
	}
	var up wire.Upgrade
	if p := d.next(); p.Topic != d.topic(wire.KindUpgrade) || json.Unmarshal(p.Payload, &up) != nil {
		t.Fatalf("got %s %s, want the upgrade", p.Topic, p.Payload)
	}
	jobID, _ := strconv.ParseInt(up.Job, 10, 64)
	d.publish(wire.Progress{Job: up.Job, Attempt: up.Attempt, State: wire.StateRebooting})
	waitFor(t, func() bool {
		j, err := api.Job(ctx, jobID)
		return err == nil && j.State == client.JobRebooting
	}, "the job to be rebooting")

	// Hold otter's next write: the device's report reaches otter and waits
	// for the lock, unacknowledged, when otter dies.
	sqldb, err := sql.Open("pgx", db)
	if err != nil {
		t.Fatal(err)
	}
	defer sqldb.Close()
	lock, err := sqldb.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback()
	if _, err := lock.ExecContext(ctx, "LOCK TABLE devices IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	if code := d.publish(wire.Inform{Modules: map[string]string{"default": "1.1.0"}}); code != 0 {
		t.Fatalf("the broker answered the report with 0x%02x, want 0 (otter subscribed)", code)
	}
	waitFor(t, func() bool {
		var waiting int
		err := sqldb.QueryRowContext(ctx, "SELECT count(*) FROM pg_locks WHERE relation = 'devices'::regclass AND NOT granted").Scan(&waiting)
		return err == nil && waiting > 0
	}, "otter to wait for the devices table")
	p.kill()
	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	var state string
	if err := sqldb.QueryRowContext(ctx, "SELECT state FROM jobs WHERE id = $1", jobID).Scan(&state); err != nil || state != string(client.JobRebooting) {
		t.Fatalf("job %d is %q (%v) with otter dead, want still rebooting: nothing was stored", jobID, state, err)
	}

	p.start() // the same client id: the broker delivers the report again
	waitFor(t, func() bool {
		j, err := api.Job(ctx, jobID)
		return err == nil && j.State == client.JobSucceeded
	}, "the job to succeed from the report delivered again")

	// The device sends both reports again (QoS 1 allows it): no second
	// effect. The engine counts each message it applied, which shows it was
	// handled (last_seen no longer moves with messages this close).
	for _, m := range []wire.Message{
		wire.Inform{Modules: map[string]string{"default": "1.1.0"}},
		wire.Progress{Job: up.Job, Attempt: up.Attempt, State: wire.StateRebooting},
	} {
		before := counterValue(p.httpURL, "otter_engine_device_messages_total")
		d.publish(m)
		waitFor(t, func() bool { return counterValue(p.httpURL, "otter_engine_device_messages_total") > before },
			"otter to handle the repeated "+string(m.Kind()))
	}
	var succeeded, events int
	for e, err := range api.AllEvents(ctx, client.EventFilter{Kind: "job", Job: jobID}, client.ListOptions{}) {
		if err != nil {
			t.Fatal(err)
		}
		events++
		if e.Action == string(client.JobSucceeded) {
			succeeded++
		}
	}
	if succeeded != 1 {
		t.Fatalf("job %d has %d succeeded events among %d, want exactly 1", jobID, succeeded, events)
	}
	if got, err := api.Task(ctx, task.ID); err != nil || got.Counts[client.JobSucceeded] != 1 {
		t.Fatalf("task %d: %+v %v, want 1 succeeded", task.ID, got, err)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
