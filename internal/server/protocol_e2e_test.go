package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/sim"
	"github.com/otter-ota/otter/sdk/device"
	"github.com/otter-ota/otter/sdk/wire"
)

// rawDevice is a device written against the protocol alone: a bare MQTT
// client, as a C firmware or a script would be.
type rawDevice struct {
	t        *testing.T
	c        *paho.Client
	product  string
	key      string
	received chan *paho.Publish
}

// rawClient is a bare MQTT 5 client on a new connection to the embedded
// broker, not yet connected, and the channel (of size buffer) that gets
// every message it receives. The connection is closed when the test ends,
// whether or not the broker took the login.
func (o *otter) rawClient(buffer int) (*paho.Client, chan *paho.Publish) {
	o.t.Helper()
	u, _ := url.Parse(o.srv.MQTTURL())
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		o.t.Fatal(err)
	}
	o.t.Cleanup(func() { _ = conn.Close() })
	received := make(chan *paho.Publish, buffer)
	c := paho.NewClient(paho.ClientConfig{
		Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			received <- pr.Packet
			return true, nil
		}},
	})
	return c, received
}

func (o *otter) dialMQTT(product, key, secret string) (*rawDevice, *paho.Connack, error) {
	o.t.Helper()
	d := &rawDevice{t: o.t, product: product, key: key}
	d.c, d.received = o.rawClient(16)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := d.c.Connect(ctx, &paho.Connect{
		ClientID: "raw-" + key, CleanStart: true, KeepAlive: 30,
		Username: product + "/" + key, UsernameFlag: true, Password: []byte(secret), PasswordFlag: true,
	})
	if err == nil {
		o.t.Cleanup(func() { _ = d.c.Disconnect(&paho.Disconnect{}) })
	}
	return d, ack, err
}

func (d *rawDevice) topic(k wire.Kind) string { return wire.Topic(d.product, d.key, k) }

func (d *rawDevice) subscribe(filters ...string) []byte {
	d.t.Helper()
	var subs []paho.SubscribeOptions
	for _, f := range filters {
		subs = append(subs, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := d.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs})
	if ack == nil { // paho also errs when the broker refused a filter
		d.t.Fatalf("subscribe: %v", err)
	}
	return ack.Reasons
}

func (d *rawDevice) publish(topic string, payload any) {
	d.t.Helper()
	if err := d.tryPublish(topic, payload); err != nil {
		d.t.Fatalf("publish %s: %v", topic, err)
	}
}

func (d *rawDevice) tryPublish(topic string, payload any) error {
	d.t.Helper()
	b, ok := payload.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(payload); err != nil {
			d.t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := d.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: b})
	return err
}

// next waits for the next downlink on the given topic.
func (d *rawDevice) next(k wire.Kind) []byte {
	d.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case p := <-d.received:
			if p.Topic == d.topic(k) {
				return p.Payload
			}
		case <-timeout:
			d.t.Fatalf("no %s message for %s", k, d.key)
		}
	}
}

// setup creates a product, devices with secrets, and a firmware.
func (o *otter) setup(devices ...string) (*client.Firmware, []byte, map[string]string) {
	o.t.Helper()
	fw, image := o.firmware("demo", "1.1.0", 100_000)
	secrets := map[string]string{}
	for _, k := range devices {
		d, err := o.api.CreateDevice(o.ctx(), "demo", client.DeviceCreate{Key: k})
		if err != nil {
			o.t.Fatal(err)
		}
		secrets[k] = d.Secret
	}
	return fw, image, secrets
}

// upgradeByHand carries out an upgrade as the protocol document says:
// download, check size, hash and signature, report, reboot, inform.
func (o *otter) upgradeByHand(d *rawDevice, u wire.Upgrade, image []byte) {
	o.t.Helper()
	resp, err := http.Get(u.URL)
	if err != nil {
		o.t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	sum := sha256.Sum256(got)
	key, err := o.api.SigningKey(o.ctx())
	if err != nil {
		o.t.Fatal(err)
	}
	if !bytes.Equal(got, image) || hex.EncodeToString(sum[:]) != u.SHA256 || int64(len(got)) != u.Size ||
		!u.Manifest(d.product).Verify(key.PublicKey, u.Signature) {
		o.t.Fatalf("downloaded %d bytes: not the firmware, or its hash or signature does not verify", len(got))
	}
	for _, p := range []wire.Progress{
		{Job: u.Job, State: wire.StateDownloading, Percent: 50},
		{Job: u.Job, State: wire.StateDownloaded},
		{Job: u.Job, State: wire.StateInstalling},
		{Job: u.Job, State: wire.StateRebooting},
	} {
		d.publish(d.topic(wire.KindProgress), p)
	}
	d.publish(d.topic(wire.KindInform), wire.Inform{Modules: map[string]string{"default": u.Version}})
}

func TestRawMQTTDeviceUpgradesInPushMode(t *testing.T) {
	o := start(t)
	fw, image, secrets := o.setup("d1")
	d, _, err := o.dialMQTT("demo", "d1", secrets["d1"])
	if err != nil {
		t.Fatal(err)
	}
	d.subscribe(d.topic(wire.KindUpgrade), d.topic(wire.KindReply))
	d.publish(d.topic(wire.KindInform), wire.Inform{Modules: map[string]string{"default": "1.0.0"}})
	task, err := o.api.CreateTask(o.ctx(), client.TaskCreate{FirmwareID: fw.ID, Target: client.Target{Devices: []string{"d1"}}})
	if err != nil {
		t.Fatal(err)
	}
	u, err := wire.DecodeUpgrade(d.next(wire.KindUpgrade))
	if err != nil || u.Mode != wire.ModePush || u.Version != "1.1.0" || u.Confirm {
		t.Fatalf("upgrade command %+v, %v", u, err)
	}
	o.upgradeByHand(d, u, image)
	done := o.waitTask(o.ctx(), task.ID, client.TaskCompleted)
	if done.Counts[client.JobSucceeded] != 1 {
		t.Fatalf("counts %v", done.Counts)
	}
}

func TestRawMQTTDeviceUpgradesInRequestMode(t *testing.T) {
	o := start(t)
	fw, image, secrets := o.setup("d1")
	d, _, err := o.dialMQTT("demo", "d1", secrets["d1"])
	if err != nil {
		t.Fatal(err)
	}
	d.subscribe(d.topic(wire.KindUpgrade), d.topic(wire.KindReply))
	d.publish(d.topic(wire.KindInform), wire.Inform{Modules: map[string]string{"default": "1.0.0"}})

	d.publish(d.topic(wire.KindRequest), wire.Request{Module: "default"})
	r, err := wire.DecodeReply(d.next(wire.KindReply))
	if err != nil || r.Error != wire.CodeNoUpgrade {
		t.Fatalf("request before any task: %+v, %v; want no_upgrade", r, err)
	}
	task, err := o.api.CreateTask(o.ctx(), client.TaskCreate{FirmwareID: fw.ID, Mode: client.ModeRequest, Target: client.Target{Devices: []string{"d1"}}})
	if err != nil {
		t.Fatal(err)
	}
	o.waitTask(o.ctx(), task.ID, client.TaskRunning)
	var offer wire.Upgrade
	o.eventually(func() bool {
		d.publish(d.topic(wire.KindRequest), wire.Request{Module: "default"})
		select {
		case p := <-d.received:
			if p.Topic == d.topic(wire.KindUpgrade) {
				offer, err = wire.DecodeUpgrade(p.Payload)
				return err == nil
			}
		case <-time.After(5 * time.Second):
		}
		return false
	}, "an offer")
	if offer.Mode != wire.ModeRequest || !offer.Confirm {
		t.Fatalf("offer %+v", offer)
	}
	d.publish(d.topic(wire.KindConfirm), wire.Confirm{Job: offer.Job, Accept: true})
	o.upgradeByHand(d, offer, image)
	o.waitTask(o.ctx(), task.ID, client.TaskCompleted)
}

func TestWrongSecretIsRefusedAtConnect(t *testing.T) {
	o := start(t)
	_, _, secrets := o.setup("d1")
	for name, creds := range map[string][2]string{
		"wrong secret":   {"d1", otherSecret(secrets["d1"])},
		"unknown device": {"nobody", secrets["d1"]},
	} {
		_, ack, err := o.dialMQTT("demo", creds[0], creds[1])
		if err == nil || ack == nil || ack.ReasonCode != 0x86 && ack.ReasonCode != 0x87 {
			t.Errorf("%s: connack %+v, err %v; want refused (bad user name or password / not authorized)", name, ack, err)
		}
	}
}

// otherSecret returns a secret that differs from s in its first character,
// whatever that character is.
func otherSecret(s string) string {
	if s[0] == '0' {
		return "1" + s[1:]
	}
	return "0" + s[1:]
}

func TestDevicesCannotReachEachOther(t *testing.T) {
	o := start(t)
	_, _, secrets := o.setup("a", "b")
	a, _, err := o.dialMQTT("demo", "a", secrets["a"])
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := o.dialMQTT("demo", "b", secrets["b"])
	if err != nil {
		t.Fatal(err)
	}
	codes := a.subscribe(b.topic(wire.KindUpgrade), "otter/v1/demo/+/upgrade", "#", a.topic(wire.KindUpgrade))
	for i, c := range codes[:3] {
		if c < 0x80 {
			t.Errorf("device a subscribed to filter %d of device b's topics (reason 0x%02x)", i, c)
		}
	}
	if codes[3] >= 0x80 {
		t.Errorf("device a could not subscribe to its own upgrade topic (0x%02x)", codes[3])
	}
	// a writes to b's inform topic: refused (MQTT 5 says so in the PUBACK),
	// and b's version stays what b reports.
	if err := a.tryPublish(b.topic(wire.KindInform), wire.Inform{Modules: map[string]string{"default": "6.6.6"}}); err == nil {
		t.Error("device a published to device b's inform topic without an error")
	}
	b.publish(b.topic(wire.KindInform), wire.Inform{Modules: map[string]string{"default": "1.0.0"}})
	o.eventually(func() bool {
		dev, err := o.api.Device(o.ctx(), "demo", "b")
		return err == nil && dev.Versions["default"] == "1.0.0"
	}, "b's own inform")
	if dev, _ := o.api.Device(o.ctx(), "demo", "b"); dev.Versions["default"] != "1.0.0" {
		t.Fatalf("b reports %v: a wrote to b's topic", dev.Versions)
	}
}

func TestMalformedPayloadGetsAnErrorReply(t *testing.T) {
	o := start(t)
	_, _, secrets := o.setup("d1")
	d, _, err := o.dialMQTT("demo", "d1", secrets["d1"])
	if err != nil {
		t.Fatal(err)
	}
	d.subscribe(d.topic(wire.KindReply))
	for _, tt := range []struct {
		kind    wire.Kind
		payload []byte
		code    string
	}{
		{wire.KindProgress, []byte(`{"job":`), wire.CodeMalformed},
		{wire.KindProgress, []byte(`{"job":"1","state":"exploding"}`), wire.CodeMalformed},
		{wire.KindInform, bytes.Repeat([]byte("x"), wire.MaxMessageSize+1), wire.CodeTooLarge},
		{wire.KindProgress, []byte(`{"job":"424242","state":"downloading","percent":5}`), wire.CodeUnknownJob},
	} {
		d.publish(d.topic(tt.kind), tt.payload)
		r, err := wire.DecodeReply(d.next(wire.KindReply))
		if err != nil || r.Error != tt.code || r.To != tt.kind {
			t.Errorf("%s %.30q: reply %+v, %v; want %s", tt.kind, tt.payload, r, err, tt.code)
		}
	}
}

func TestInterruptedDownloadResumesWithTheExactFile(t *testing.T) {
	o := start(t)
	fw, image, secrets := o.setup("d1")
	d, _, err := o.dialMQTT("demo", "d1", secrets["d1"])
	if err != nil {
		t.Fatal(err)
	}
	d.subscribe(d.topic(wire.KindUpgrade))
	d.publish(d.topic(wire.KindInform), wire.Inform{Modules: map[string]string{"default": "1.0.0"}})
	if _, err := o.api.CreateTask(o.ctx(), client.TaskCreate{FirmwareID: fw.ID, Target: client.Target{Devices: []string{"d1"}}}); err != nil {
		t.Fatal(err)
	}
	u, err := wire.DecodeUpgrade(d.next(wire.KindUpgrade))
	if err != nil {
		t.Fatal(err)
	}
	// The connection breaks after 30,000 bytes.
	resp, err := http.Get(u.URL)
	if err != nil {
		t.Fatal(err)
	}
	first, err := io.ReadAll(io.LimitReader(resp.Body, 30000))
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	if err != nil || len(first) != 30000 || etag == "" {
		t.Fatalf("first part: %d bytes, etag %q, %v", len(first), etag, err)
	}
	req, _ := http.NewRequest(http.MethodGet, u.URL, nil)
	req.Header.Set("Range", "bytes="+strconv.Itoa(len(first))+"-")
	req.Header.Set("If-Range", etag)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(append(first, rest...), image) {
		t.Fatalf("resumed download: %s, %d+%d bytes, not the firmware", resp.Status, len(first), len(rest))
	}
	resp, err = http.Get(u.URL[:len(u.URL)-4] + "AAAA") // a tampered signature
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("download with a tampered URL: %s, want 403", resp.Status)
	}
}

// failureOf runs one simulated device through a task and returns the code
// its job failed with.
func (o *otter) failureOf(ctx context.Context, fw *client.Firmware, mod func(*sim.Config)) string {
	o.t.Helper()
	o.fleet(ctx, "demo", 1, mod)
	task, err := o.api.CreateTask(ctx, client.TaskCreate{FirmwareID: fw.ID, Target: client.Target{All: true}})
	if err != nil {
		o.t.Fatal(err)
	}
	o.waitTask(ctx, task.ID, client.TaskCompleted)
	for j, err := range o.api.AllTaskJobs(ctx, task.ID, nil, client.ListOptions{}) {
		if err != nil {
			o.t.Fatal(err)
		}
		if j.State != client.JobFailed {
			o.t.Fatalf("job %+v, want failed", j)
		}
		return j.Code
	}
	o.t.Fatal("the task has no job")
	return ""
}

func TestSDKRefusesATamperedFile(t *testing.T) {
	o := start(t)
	ctx, cancel := context.WithCancel(o.ctx())
	defer cancel()
	fw, image := o.firmware("demo", "1.1.0", 50_000)
	// Flip a byte of the stored file, as a corrupted disk or a man in the
	// middle would.
	err := filepath.WalkDir(filepath.Join(o.dir, "blobs"), func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		if b, err := os.ReadFile(path); err == nil && bytes.Equal(b, image) {
			b[100] ^= 0xff
			return os.WriteFile(path, b, 0o600)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if code := o.failureOf(ctx, fw, nil); code != wire.FailVerify {
		t.Fatalf("tampered file: job failed with %q, want %s", code, wire.FailVerify)
	}
}

func TestSDKRefusesABadSignature(t *testing.T) {
	o := start(t)
	ctx, cancel := context.WithCancel(o.ctx())
	defer cancel()
	fw, _ := o.firmware("demo", "1.1.0", 50_000)
	stranger := make([]byte, 32) // a key that did not sign the firmware
	stranger[0] = 1
	code := o.failureOf(ctx, fw, func(c *sim.Config) {
		c.PublicKey = stranger
		c.OnEvent = func(k string, e device.Event) {
			if e.Kind == device.EventProgress && e.State == wire.StateDownloading {
				panic(fmt.Sprintf("%s downloaded a firmware whose signature does not verify", k))
			}
		}
	})
	if code != wire.FailSignature {
		t.Fatalf("bad signature: job failed with %q, want %s", code, wire.FailSignature)
	}
}
