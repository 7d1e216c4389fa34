package server_test

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/sdk/wire"
)

// enosDevice is a device written from the facts of EnOS's device protocol
// (../shared/reference/enos-device-protocol.md), on a bare MQTT client:
// not otter's SDK, not EnOS's. Like EnOS's SDKs it never subscribes to its
// command topic.
type enosDevice struct {
	t        *testing.T
	c        *paho.Client
	product  string
	key      string
	received chan *paho.Publish
	ids      atomic.Int64
}

// enosLogin is what a device puts in its CONNECT; the test may spoil it.
type enosLogin struct {
	signMethod string
	timestamp  string
	secret     string
	upper      bool
}

// enosPassword is the login signature: the hex digest of the parameters
// sorted by name, each name followed by its value, then the secret.
func enosPassword(clientID, product, key string, l enosLogin) string {
	content := "clientId" + clientID + "deviceKey" + key + "productKey" + product + "timestamp" + l.timestamp + l.secret
	var sum []byte
	if strings.HasSuffix(l.signMethod, "md5") {
		s := md5.Sum([]byte(content))
		sum = s[:]
	} else {
		s := sha256.Sum256([]byte(content))
		sum = s[:]
	}
	if l.upper {
		return strings.ToUpper(hex.EncodeToString(sum))
	}
	return hex.EncodeToString(sum)
}

func now() string { return strconv.FormatInt(time.Now().UnixMilli(), 10) }

// dialEnOS logs a device in the EnOS way; it returns the CONNACK's reason
// code, and the device when it was accepted.
func (o *otter) dialEnOS(product, key string, l enosLogin) (byte, *enosDevice) {
	o.t.Helper()
	if l.signMethod == "" {
		l.signMethod = "sha256"
	}
	if l.timestamp == "" {
		l.timestamp = now()
	}
	d := &enosDevice{t: o.t, product: product, key: key}
	d.c, d.received = o.rawClient(32)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	clientID := "sn-" + key
	ack, err := d.c.Connect(ctx, &paho.Connect{
		ClientID:   clientID + "|securemode=2,signmethod=" + l.signMethod + ",timestamp=" + l.timestamp + "|",
		CleanStart: true, KeepAlive: 30,
		Username: key + "&" + product, UsernameFlag: true,
		Password: []byte(enosPassword(clientID, product, key, l)), PasswordFlag: true,
	})
	if ack == nil {
		o.t.Fatalf("EnOS login of %s: no CONNACK: %v", key, err)
	}
	if err != nil {
		return ack.ReasonCode, nil
	}
	o.t.Cleanup(func() { _ = d.c.Disconnect(&paho.Disconnect{}) })
	return ack.ReasonCode, d
}

func (o *otter) enos(product, key, secret string) *enosDevice {
	o.t.Helper()
	code, d := o.dialEnOS(product, key, enosLogin{secret: secret})
	if d == nil {
		o.t.Fatalf("EnOS login of %s refused: CONNACK 0x%02x", key, code)
	}
	return d
}

func (d *enosDevice) topic(name string) string {
	return "/sys/" + d.product + "/" + d.key + "/ota/device/" + name
}

// enosReply is EnOS's answer envelope.
type enosReply struct {
	ID      json.RawMessage `json:"id"`
	Code    int             `json:"code"`
	Data    json.RawMessage `json:"data"`
	Message string          `json:"message"`
}

// call publishes a request on /ota/device/{name} and returns the answer
// on its _reply topic (which the device never subscribed to).
func (d *enosDevice) call(name, method string, params any) enosReply {
	d.t.Helper()
	id := strconv.FormatInt(d.ids.Add(1), 10)
	body, _ := json.Marshal(map[string]any{"id": id, "version": "1.0", "method": method, "params": params})
	d.publish(d.topic(name), body)
	p := d.next(d.topic(name + "_reply"))
	var r enosReply
	if err := json.Unmarshal(p, &r); err != nil {
		d.t.Fatalf("reply %s: %v", p, err)
	}
	if string(r.ID) != `"`+id+`"` {
		d.t.Fatalf("reply %s does not echo id %s", p, id)
	}
	return r
}

func (d *enosDevice) publish(topic string, body []byte) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := d.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: body}); err != nil {
		d.t.Fatalf("publish %s: %v", topic, err)
	}
}

// next waits for the next message on topic, skipping others.
func (d *enosDevice) next(topic string) []byte {
	d.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case p := <-d.received:
			if p.Topic == topic {
				return p.Payload
			}
		case <-timeout:
			d.t.Fatalf("%s: nothing on %s", d.key, topic)
		}
	}
}

func (d *enosDevice) inform(version any) {
	d.t.Helper()
	if r := d.call("inform", "ota.device.inform", map[string]any{"version": version}); r.Code != 200 {
		d.t.Fatalf("inform answered %+v", r)
	}
}

func (d *enosDevice) progress(step, desc string) {
	d.t.Helper()
	// EnOS's Python SDK sends "ota.progress"; otter routes by topic.
	if r := d.call("progress", "ota.progress", map[string]any{"step": step, "desc": desc}); r.Code != 200 {
		d.t.Fatalf("progress %s answered %+v", step, r)
	}
}

// enosFirmware is an upgrade's params and a getversion entry.
type enosFirmware struct {
	Version    string `json:"version"`
	Sign       string `json:"sign"`
	SignMethod string `json:"signMethod"`
	FileURL    string `json:"fileUrl"`
	FileSize   int64  `json:"fileSize"`
}

// upgrade waits for the upgrade command and answers it as EnOS's SDKs do.
func (d *enosDevice) upgrade() (string, enosFirmware) {
	d.t.Helper()
	var cmd struct {
		ID      string       `json:"id"`
		Version string       `json:"version"`
		Method  string       `json:"method"`
		Params  enosFirmware `json:"params"`
	}
	p := d.next(d.topic("upgrade"))
	if err := json.Unmarshal(p, &cmd); err != nil || cmd.Method != "ota.device.upgrade" || cmd.Version != "1.0" || cmd.ID == "" {
		d.t.Fatalf("upgrade command %s: %v", p, err)
	}
	d.publish(d.topic("upgrade_reply"), []byte(`{"id":"`+cmd.ID+`","code":200,"data":""}`))
	return cmd.ID, cmd.Params
}

// download fetches a firmware as a device does and checks its digest.
func (d *enosDevice) download(f enosFirmware, image []byte) {
	d.t.Helper()
	resp, err := http.Get(f.FileURL)
	if err != nil {
		d.t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	sum := sha256.Sum256(got)
	if f.SignMethod != "sha256" || hex.EncodeToString(sum[:]) != f.Sign || int64(len(got)) != f.FileSize || string(got) != string(image) {
		d.t.Fatalf("downloaded %d bytes from %s: not the firmware of %+v", len(got), f.FileURL, f)
	}
}

// enosProduct creates product "en", taking EnOS logins, with devices.
func (o *otter) enosProduct(keys ...string) map[string]string {
	o.t.Helper()
	if _, err := o.api.CreateProduct(o.ctx(), client.ProductCreate{Key: "en", Protocol: "enos"}); err != nil {
		o.t.Fatal(err)
	}
	secrets := map[string]string{}
	for _, k := range keys {
		d, err := o.api.CreateDevice(o.ctx(), "en", client.DeviceCreate{Key: k})
		if err != nil {
			o.t.Fatal(err)
		}
		secrets[k] = d.Secret
	}
	return secrets
}

func (o *otter) metric(line string) bool {
	o.t.Helper()
	resp, err := http.Get(o.srv.HTTPURL() + "/metrics")
	if err != nil {
		o.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return strings.Contains(string(b), line)
}

func TestEnOSLogin(t *testing.T) {
	o := start(t)
	secrets := o.enosProduct("d1", "d2")
	ctx := o.ctx()

	for _, l := range []enosLogin{
		{secret: secrets["d1"]},
		{secret: secrets["d1"], upper: true},
		{secret: secrets["d1"], signMethod: "md5"},
		{secret: secrets["d1"], signMethod: "hmacsha256", timestamp: now() + ".123"},
	} {
		if code, d := o.dialEnOS("en", "d1", l); d == nil {
			t.Errorf("login %+v refused: 0x%02x", l, code)
		} else {
			d.inform("1.0.0")
		}
	}
	stale := strconv.FormatInt(time.Now().Add(-2*time.Hour).UnixMilli(), 10)
	future := strconv.FormatInt(time.Now().Add(2*time.Hour).UnixMilli(), 10)
	refused := []struct {
		name, product, key string
		l                  enosLogin
		reason             string
	}{
		{"another device's secret", "en", "d1", enosLogin{secret: secrets["d2"]}, "bad_signature"},
		{"stale timestamp", "en", "d1", enosLogin{secret: secrets["d1"], timestamp: stale}, "clock_skew"},
		{"future timestamp", "en", "d1", enosLogin{secret: secrets["d1"], timestamp: future}, "clock_skew"},
		{"unknown device", "en", "ghost", enosLogin{secret: secrets["d1"]}, "unknown_device"},
		{"unknown product", "nope", "d1", enosLogin{secret: secrets["d1"]}, "unknown_device"},
	}
	for _, tt := range refused {
		if code, d := o.dialEnOS(tt.product, tt.key, tt.l); d != nil || code != 0x86 {
			t.Errorf("%s: CONNACK 0x%02x, want 0x86", tt.name, code)
		}
		if !o.metric(`otter_mqtt_auth_failures_total{reason="` + tt.reason + `"}`) {
			t.Errorf("%s: no refusal counted as %s", tt.name, tt.reason)
		}
	}

	// A product of otter's protocol takes no EnOS login; switched, its
	// devices need a new secret first, and keep otter's login meanwhile.
	if _, err := o.api.CreateProduct(ctx, client.ProductCreate{Key: "ot"}); err != nil {
		t.Fatal(err)
	}
	old, err := o.api.CreateDevice(ctx, "ot", client.DeviceCreate{Key: "o1"})
	if err != nil {
		t.Fatal(err)
	}
	if code, d := o.dialEnOS("ot", "o1", enosLogin{secret: old.Secret}); d != nil || code != 0x86 || !o.metric(`otter_mqtt_auth_failures_total{reason="not_enos_product"} 1`) {
		t.Errorf("EnOS login to an otter product: CONNACK 0x%02x", code)
	}
	enos := "enos"
	if _, err := o.api.UpdateProduct(ctx, "ot", client.ProductUpdate{Protocol: &enos}); err != nil {
		t.Fatal(err)
	}
	if code, d := o.dialEnOS("ot", "o1", enosLogin{secret: old.Secret}); d != nil || code != 0x86 || !o.metric(`otter_mqtt_auth_failures_total{reason="no_sealed_secret"} 1`) {
		t.Errorf("EnOS login of a device older than the switch: CONNACK 0x%02x", code)
	}
	if _, _, err := o.dialMQTT("ot", "o1", old.Secret); err != nil {
		t.Errorf("otter login of a device older than the switch: %v", err)
	}
	rotated, err := o.api.RotateDeviceSecret(ctx, "ot", "o1")
	if err != nil {
		t.Fatal(err)
	}
	if code, d := o.dialEnOS("ot", "o1", enosLogin{secret: rotated.Secret}); d == nil {
		t.Errorf("EnOS login after the rotation refused: 0x%02x", code)
	}
}

// One push task over EnOS devices and an otter-protocol device of the same
// product: success, download failure (-2), decline (-5), rollback (step
// 100 then the old version), a device offline when the task starts, and
// the otter device.
func TestEnOSPushUpgradesOneMixedTask(t *testing.T) {
	o := start(t)
	ctx := o.ctx()
	secrets := o.enosProduct("ok", "dlfail", "decline", "rollback", "late", "custom", "ot")
	fw, image := o.firmware("en", "1.1.0", 50_000)
	devs := map[string]*enosDevice{}
	for _, k := range []string{"ok", "dlfail", "decline", "rollback", "custom"} {
		devs[k] = o.enos("en", k, secrets[k])
		devs[k].inform("1.0.0")
	}
	ot, _, err := o.dialMQTT("en", "ot", secrets["ot"])
	if err != nil {
		t.Fatal(err)
	}
	ot.subscribe(ot.topic(wire.KindUpgrade), ot.topic(wire.KindReply))
	ot.publish(ot.topic(wire.KindInform), wire.Inform{Modules: map[string]string{"default": "1.0.0"}})
	// "late" reported its version once, then went offline.
	late := o.enos("en", "late", secrets["late"])
	late.inform(json.Number("1.0")) // a number, as EnOS's Python sample sends it
	_ = late.c.Disconnect(&paho.Disconnect{})
	o.eventually(func() bool {
		d, err := o.api.Device(ctx, "en", "late")
		return err == nil && !d.Online && d.Versions["default"] == "1.0"
	}, "late to be offline on version 1.0")

	task := o.create(ctx, client.TaskCreate{FirmwareID: fw.ID, Target: client.Target{Devices: []string{"ok", "dlfail", "decline", "rollback", "late", "custom", "ot"}}})

	for k, d := range devs {
		_, f := d.upgrade()
		if f.Version != "1.1.0" || f.FileSize != 50_000 {
			t.Fatalf("%s: upgrade %+v", k, f)
		}
		switch k {
		case "ok":
			d.progress("0", "")
			d.download(f, image)
			d.progress("35", "downloading firmware finished")
			d.progress("90", "running")
			d.progress("100", "upgrading firmware finished")
			d.inform("1.1.0")
		case "dlfail":
			d.progress("10", "")
			d.progress("-2", "connection reset")
		case "decline":
			d.progress("-5", "the user postponed it")
		case "rollback":
			d.download(f, image)
			d.progress("100", "")
			d.inform("1.0.0")
		case "custom":
			d.progress("-17", "battery too low")
		}
	}
	u, err := wire.DecodeUpgrade(ot.next(wire.KindUpgrade))
	if err != nil {
		t.Fatal(err)
	}
	o.upgradeByHand(ot, u, image)

	late = o.enos("en", "late", secrets["late"])
	_, f := late.upgrade()
	late.download(f, image)
	late.progress("50", "")
	late.progress("100", "")
	late.inform("1.1.0")

	_, jobs := o.settled(ctx, task.ID)
	want := map[string]string{
		"ok": "succeeded/", "ot": "succeeded/", "late": "succeeded/",
		"dlfail": "failed/download_failed", "decline": "rejected/", "rollback": "failed/rolled_back",
		"custom": "failed/device_defined",
	}
	for _, j := range jobs {
		if got := string(j.State) + "/" + j.Code; got != want[j.Device] {
			t.Errorf("job of %s: %s (%s), want %s", j.Device, got, j.Message, want[j.Device])
		}
		if j.Device == "custom" && !strings.Contains(j.Message, "-17") || j.Device == "decline" && j.Message != "the user postponed it" {
			t.Errorf("job of %s: message %q does not keep the device's desc", j.Device, j.Message)
		}
	}
}

func TestEnOSRequestModeThroughGetVersion(t *testing.T) {
	o := start(t)
	ctx := o.ctx()
	secrets := o.enosProduct("d1")
	fw, image := o.firmware("en", "1.1.0", 20_000)
	d := o.enos("en", "d1", secrets["d1"])
	d.inform("1.0.0")
	if r := d.call("getversion", "ota.device.getversion", map[string]any{}); r.Code != 200 || string(r.Data) != "[]" {
		t.Fatalf("getversion with no task: %+v", r)
	}
	task := o.create(ctx, client.TaskCreate{FirmwareID: fw.ID, Mode: client.ModeRequest, Target: client.Target{Devices: []string{"d1"}}})
	o.waitTask(ctx, task.ID, client.TaskRunning)
	// EnOS's Python SDK spells this method "Ota.device.getversion".
	r := d.call("getversion", "Ota.device.getversion", map[string]any{})
	var list []enosFirmware
	if err := json.Unmarshal(r.Data, &list); err != nil || r.Code != 200 || len(list) != 1 || list[0].Version != "1.1.0" {
		t.Fatalf("getversion in a request task: %+v (%v)", r, err)
	}
	jobs := o.jobs(ctx, task.ID)
	if jobs[0].State != client.JobOffered {
		t.Fatalf("job after getversion: %s, want offered", jobs[0].State)
	}
	d.download(list[0], image)
	d.progress("20", "")
	o.eventually(func() bool { j := o.jobs(ctx, task.ID)[0]; return j.State == client.JobDownloading && j.Percent == 20 }, "the first progress to accept the offer")
	events := o.events(ctx, client.EventFilter{Task: task.ID})
	accepted := false
	for _, e := range events {
		accepted = accepted || e.Action == "accepted" || e.Data["to"] == "accepted" || e.Data["state"] == "accepted"
	}
	if !accepted {
		t.Errorf("no accepted event: the first progress was not taken as the confirmation")
	}
	d.progress("100", "")
	d.inform("1.1.0")
	if done := o.waitTask(ctx, task.ID, client.TaskCompleted); done.Counts[client.JobSucceeded] != 1 {
		t.Fatalf("counts %v", done.Counts)
	}
}

// An EnOS device is confined to its own /sys/{product}/{device}/ tree:
// subscriptions inside it are granted (and carry nothing otter does not
// send), others refused without a disconnect; a topic otter does not
// implement is answered with an error; another device's upgrade never
// reaches it.
func TestEnOSDeviceStaysInItsTree(t *testing.T) {
	o := start(t)
	ctx := o.ctx()
	secrets := o.enosProduct("d1", "d2")
	fw, _ := o.firmware("en", "1.1.0", 1000)
	d1, d2 := o.enos("en", "d1", secrets["d1"]), o.enos("en", "d2", secrets["d2"])
	d1.inform("1.0.0")
	d2.inform("1.0.0")
	sub := func(filter string) byte {
		ack, err := d1.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
		if ack == nil {
			t.Fatalf("subscribe %s: %v", filter, err)
		}
		return ack.Reasons[0]
	}
	for filter, ok := range map[string]bool{
		"/sys/en/d1/thing/service/+":    true,
		"/sys/en/d1/ota/device/upgrade": true,
		"/sys/en/d1/#":                  true,
		"/sys/en/d2/ota/device/upgrade": false,
		"/sys/en/+/ota/device/upgrade":  false,
		"#":                             false,
		"otter/v1/en/d2/upgrade":        false,
	} {
		if code := sub(filter); (code < 0x80) != ok {
			t.Errorf("subscribe %s: reason 0x%02x, want granted %v", filter, code, ok)
		}
	}
	d1.publish("/sys/en/d1/thing/event/property/post", []byte(`{"id":"9","version":"1.0","method":"thing.event.property.post","params":{}}`))
	var r enosReply
	if err := json.Unmarshal(d1.next("/sys/en/d1/thing/event/property/post_reply"), &r); err != nil || r.Code != 1101 || string(r.ID) != `"9"` {
		t.Errorf("unsupported topic answered %+v, %v; want code 1101", r, err)
	}
	o.create(ctx, client.TaskCreate{FirmwareID: fw.ID, Target: client.Target{Devices: []string{"d2"}}})
	d2.upgrade()
	d1.inform("1.0.0") // still connected after the refused subscriptions, and answered
	select {
	case p := <-d1.received:
		t.Errorf("d1 received %s on %s", p.Payload, p.Topic)
	default:
	}
}

// A retry sends the EnOS device the command again, and its reports then
// apply to the new attempt.
func TestEnOSRetryAfterAFailure(t *testing.T) {
	o := start(t)
	ctx := o.ctx()
	secrets := o.enosProduct("d1")
	fw, image := o.firmware("en", "1.1.0", 10_000)
	d := o.enos("en", "d1", secrets["d1"])
	d.inform("1.0.0")
	task := o.create(ctx, client.TaskCreate{FirmwareID: fw.ID, Target: client.Target{Devices: []string{"d1"}},
		Policy: client.Policy{Retries: 1, RetryBackoff: client.Duration(100 * time.Millisecond)}})
	d.upgrade()
	d.progress("-3", "digest differs")
	_, f := d.upgrade() // the retry
	d.download(f, image)
	d.progress("60", "")
	d.progress("100", "")
	d.inform("1.1.0")
	_, jobs := o.settled(ctx, task.ID)
	if j := jobs[0]; j.State != client.JobSucceeded || j.Attempt != 2 {
		t.Fatalf("job %s at attempt %d, want succeeded at attempt 2", j.State, j.Attempt)
	}
}
