package server_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/store/storetest"
	"github.com/otter-ota/otter/sdk/wire"
)

// httpInform sends an inform over the HTTP device API and returns the
// status.
func (o *otter) httpInform(key, secret string) int {
	o.t.Helper()
	req, err := http.NewRequestWithContext(o.ctx(), http.MethodPost, o.srv.HTTPURL()+wire.HTTPPath(wire.KindInform),
		bytes.NewReader([]byte(`{"modules":{"default":"1.0.0"}}`)))
	if err != nil {
		o.t.Fatal(err)
	}
	req.SetBasicAuth("demo/"+key, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		o.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// dialSession connects a raw MQTT 5 device with a given client id, as a
// persistent session unless clean.
func (o *otter) dialSession(key, secret, clientID string, clean bool) (*rawDevice, *paho.Connack) {
	o.t.Helper()
	u, _ := url.Parse(o.srv.MQTTURL())
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		o.t.Fatal(err)
	}
	d := &rawDevice{t: o.t, product: "demo", key: key, received: make(chan *paho.Publish, 16)}
	d.c = paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			d.received <- pr.Packet
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	expiry := uint32(3600)
	if clean {
		expiry = 0
	}
	ack, err := d.c.Connect(ctx, &paho.Connect{
		ClientID: clientID, CleanStart: clean, KeepAlive: 30, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry},
		Username: "demo/" + key, UsernameFlag: true, Password: []byte(secret), PasswordFlag: true,
	})
	if err != nil {
		o.t.Fatalf("connect %s: %v", key, err)
	}
	o.t.Cleanup(func() { _ = d.c.Disconnect(&paho.Disconnect{}) })
	return d, ack
}

// closedSoon fails the test unless the device's connection ends at once.
func (d *rawDevice) closedSoon(what string) {
	d.t.Helper()
	select {
	case <-d.c.Done():
	case <-time.After(5 * time.Second):
		d.t.Fatalf("%s: the MQTT session of %s is still open", what, d.key)
	}
}

func TestRotatedSecretTakesEffectAtOnceEverywhere(t *testing.T) {
	o := start(t)
	_, _, secrets := o.setup("d1")
	old := secrets["d1"]
	if s := o.httpInform("d1", old); s != http.StatusNoContent { // the device API caches the login
		t.Fatalf("inform with the secret: %d", s)
	}
	session, _, err := o.dialMQTT("demo", "d1", old)
	if err != nil {
		t.Fatal(err)
	}
	session.subscribe(session.topic(wire.KindUpgrade))

	rotated, err := o.api.RotateDeviceSecret(o.ctx(), "demo", "d1")
	if err != nil {
		t.Fatal(err)
	}
	if s := o.httpInform("d1", old); s != http.StatusUnauthorized {
		t.Errorf("old secret right after the rotation: %d, want 401", s)
	}
	if s := o.httpInform("d1", rotated.Secret); s != http.StatusNoContent {
		t.Errorf("new secret right after the rotation: %d, want 204", s)
	}
	session.closedSoon("after the rotation")
	if _, _, err := o.dialMQTT("demo", "d1", old); err == nil {
		t.Error("the old secret still opens an MQTT session")
	}
	if _, _, err := o.dialMQTT("demo", "d1", rotated.Secret); err != nil {
		t.Errorf("the new secret opens no MQTT session: %v", err)
	}
}

// A deleted device is cut off at once, its job is cancelled so its task
// completes (and stays so across a restart), and a device created again
// with its key never gets the deleted device's session.
func TestDeletedDeviceIsCutOffAndItsTaskCompletes(t *testing.T) {
	dir, db := t.TempDir(), storetest.URL(t)
	o := startIn(t, dir, db)
	fw, image, secrets := o.setup("d1", "d2")
	d1, _, err := o.dialMQTT("demo", "d1", secrets["d1"])
	if err != nil {
		t.Fatal(err)
	}
	d1.subscribe(d1.topic(wire.KindUpgrade))
	d1.publish(d1.topic(wire.KindInform), wire.Inform{Modules: map[string]string{"default": "1.0.0"}})
	d2, _ := o.dialSession("d2", secrets["d2"], "d2-persistent", false)
	d2.subscribe(d2.topic(wire.KindUpgrade))
	d2.publish(d2.topic(wire.KindInform), wire.Inform{Modules: map[string]string{"default": "1.0.0"}})
	if s := o.httpInform("d2", secrets["d2"]); s != http.StatusNoContent {
		t.Fatalf("d2 over HTTP: %d", s)
	}
	task, err := o.api.CreateTask(o.ctx(), client.TaskCreate{FirmwareID: fw.ID, Target: client.Target{Devices: []string{"d1", "d2"}}})
	if err != nil {
		t.Fatal(err)
	}
	u, err := wire.DecodeUpgrade(d1.next(wire.KindUpgrade))
	if err != nil {
		t.Fatal(err)
	}
	d2.next(wire.KindUpgrade)

	if err := o.api.DeleteDevice(o.ctx(), "demo", "d2"); err != nil {
		t.Fatal(err)
	}
	d2.closedSoon("after the deletion")
	if s := o.httpInform("d2", secrets["d2"]); s != http.StatusUnauthorized {
		t.Errorf("deleted device over HTTP: %d, want 401", s)
	}
	o.upgradeByHand(d1, u, image)
	done, jobs := o.settled(o.ctx(), task.ID)
	for _, j := range jobs {
		if j.Device == "d2" && (j.State != client.JobCancelled || j.Code != "device_deleted") {
			t.Errorf("d2's job: %s %q, want cancelled device_deleted", j.State, j.Code)
		}
	}
	o.waitTask(o.ctx(), task.ID, client.TaskCompleted)
	if done.Counts[client.JobSucceeded] != 1 {
		t.Errorf("counts %v", done.Counts)
	}

	o.srv.Close()
	o = startIn(t, dir, db)
	if got := o.taskNow(o.ctx(), task.ID); got.State != client.TaskCompleted || got.Counts[client.JobCancelled] != 1 {
		t.Errorf("after a restart the task is %s with counts %v", got.State, got.Counts)
	}
	again, err := o.api.CreateDevice(o.ctx(), "demo", client.DeviceCreate{Key: "d2"})
	if err != nil {
		t.Fatal(err)
	}
	if s := o.httpInform("d2", again.Secret); s != http.StatusNoContent {
		t.Errorf("the device created again, over HTTP at once: %d, want 204", s)
	}
	if s := o.httpInform("d2", secrets["d2"]); s != http.StatusUnauthorized {
		t.Errorf("the deleted device's secret: %d, want 401", s)
	}
	_, ack := o.dialSession("d2", again.Secret, "d2-persistent", false)
	if ack.SessionPresent {
		t.Error("the device created again resumed the deleted device's session")
	}
}

// Deleting a device while it and healthy devices send messages: the healthy
// ones are never refused or told to retry because of it.
func TestDeletedDevicesMessagesNeverFailHealthyOnes(t *testing.T) {
	o := start(t)
	keys := []string{"h1", "h2", "h3", "h4", "gone"}
	_, _, secrets := o.setup(keys...)
	var wg sync.WaitGroup
	var stop atomic.Bool
	var goneOK, goneRefused atomic.Int64
	for _, k := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				s := o.httpInform(k, secrets[k])
				switch {
				case k != "gone" && s != http.StatusNoContent:
					t.Errorf("healthy %s got %d", k, s)
				case k == "gone" && s == http.StatusNoContent:
					goneOK.Add(1)
				case k == "gone" && s == http.StatusUnauthorized:
					goneRefused.Add(1)
				case k == "gone":
					t.Errorf("deleted device got %d, want 204 before its deletion and 401 after", s)
				}
			}
		}()
	}
	o.eventually(func() bool { return goneOK.Load() >= 20 }, "the device to send before its deletion")
	if err := o.api.DeleteDevice(o.ctx(), "demo", "gone"); err != nil {
		t.Fatal(err)
	}
	o.eventually(func() bool { return goneRefused.Load() >= 20 }, "the device to send after its deletion")
	stop.Store(true)
	wg.Wait()
	if s := o.httpInform("gone", secrets["gone"]); s != http.StatusUnauthorized {
		t.Errorf("deleted device: %d, want 401", s)
	}
}

// A device that connects with a command pending gets it once, however
// fast it subscribes after its CONNACK: whether the command was sent while
// it was away (notified) or starts as it connects (queued).
func TestPendingCommandArrivesOnceOnConnect(t *testing.T) {
	o := start(t)
	fw, _, secrets := o.setup("d1", "d2")
	for _, k := range []string{"d1", "d2"} {
		if s := o.httpInform(k, secrets[k]); s != http.StatusNoContent {
			t.Fatalf("inform %s: %d", k, s)
		}
	}
	d1, _, err := o.dialMQTT("demo", "d1", secrets["d1"])
	if err != nil {
		t.Fatal(err)
	}
	d1.subscribe(d1.topic(wire.KindUpgrade))
	// d1 gets its command now; d2, offline, when it connects.
	if _, err := o.api.CreateTask(o.ctx(), client.TaskCreate{FirmwareID: fw.ID, Target: client.Target{Devices: []string{"d1", "d2"}}}); err != nil {
		t.Fatal(err)
	}
	d1.next(wire.KindUpgrade)
	if err := d1.c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		for _, k := range []string{"d1", "d2"} {
			d, _ := o.dialSession(k, secrets[k], "raw-"+k, true)
			d.subscribe(d.topic(wire.KindUpgrade))
			d.next(wire.KindUpgrade)
			o.holds(func() (bool, string) {
				select {
				case p := <-d.received:
					return false, "another message on " + p.Topic
				default:
					return true, ""
				}
			}, "round "+strconv.Itoa(round)+": the pending command of "+k+" was sent more than once")
			if err := d.c.Disconnect(&paho.Disconnect{}); err != nil {
				t.Fatal(err)
			}
		}
	}
}
