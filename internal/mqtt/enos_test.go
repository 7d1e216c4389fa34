package mqtt

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/internal/store/storetest"
	"github.com/otter-ota/otter/sdk/wire"
)

// enosEnv is a broker over a store with product "en" (EnOS) and device
// "d1" whose secret is sealed, as EnOS's SDKs meet it: MQTT 3.1.1.
type enosEnv struct {
	b       *Broker
	devices *fakeDevices
	secret  string
}

func newEnOSEnv(t *testing.T) *enosEnv {
	t.Helper()
	ctx := context.Background()
	st := storetest.Open(t)
	box, err := credential.NewBox([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateProduct(ctx, &ota.Product{Key: "en", Protocol: ota.ProtocolEnOS}); err != nil {
		t.Fatal(err)
	}
	e := &enosEnv{devices: newFakeDevices()}
	e.secret, _ = credential.NewDeviceSecret()
	sealed, err := box.Seal("en", "d1", e.secret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateDevices(ctx, []store.NewDevice{{Product: "en", Key: "d1", SecretHash: credential.Hash(e.secret), SecretSealed: sealed}}); err != nil {
		t.Fatal(err)
	}
	e.b = startBroker(t, Config{Addr: "127.0.0.1:0", Devices: e.devices, Credentials: st, Secrets: box, EnOSClockSkew: time.Minute})
	return e
}

// login connects as EnOS's SDKs do and returns the CONNACK return code.
func (e *enosEnv) login(t *testing.T, c *raw, ts time.Time, secret string) byte {
	t.Helper()
	stamp := strconv.FormatInt(ts.UnixMilli(), 10)
	sum := sha256.Sum256([]byte("clientIdsn1deviceKeyd1productKeyentimestamp" + stamp + secret))
	return c.connect("sn1|securemode=2,signmethod=sha256,timestamp="+stamp+"|", "d1&en", hex.EncodeToString(sum[:]))
}

// publishOf reads the next PUBLISH (QoS 1) and acknowledges it.
func (c *raw) publishOf() (string, string) {
	c.t.Helper()
	for {
		typ, body, err := c.read()
		if err != nil {
			c.t.Fatalf("want a PUBLISH: %v", err)
		}
		if typ&0xf0 != 0x30 {
			continue // PUBACK, SUBACK
		}
		n := int(binary.BigEndian.Uint16(body))
		topic := string(body[2 : 2+n])
		rest := body[2+n:]
		if typ&0x06 != 0 {
			c.write(0x40, rest[:2])
			rest = rest[2:]
		}
		return topic, string(rest)
	}
}

func TestEnOSLoginOverMQTT311(t *testing.T) {
	e := newEnOSEnv(t)
	for name, tt := range map[string]struct {
		at     time.Time
		secret string
		code   byte
	}{
		"good":        {time.Now(), e.secret, 0},
		"bad secret":  {time.Now(), "x" + e.secret[1:], 4},
		"stale":       {time.Now().Add(-2 * time.Minute), e.secret, 4},
		"in the skew": {time.Now().Add(-30 * time.Second), e.secret, 0},
	} {
		c := dialRaw(t, e.b.Addr())
		if code := e.login(t, c, tt.at, tt.secret); code != tt.code {
			t.Errorf("%s: CONNACK %d, want %d", name, code, tt.code)
		}
	}
}

// An EnOS device gets its replies and commands without subscribing, once
// each even when it subscribed to its tree as well; an upgrade reaches it
// in EnOS's form, and its progress maps onto the job it names none of.
func TestEnOSDeliveryWithoutSubscription(t *testing.T) {
	e := newEnOSEnv(t)
	c := dialRaw(t, e.b.Addr())
	if code := e.login(t, c, time.Now(), e.secret); code != 0 {
		t.Fatalf("CONNACK %d", code)
	}
	e.devices.waitFor(t, "Connected", func(calls []call) bool { return count(calls, "Connected", "d1") == 1 })
	c.publish1("/sys/en/d1/ota/device/inform", []byte(`{"id":"1","method":"ota.inform","params":{"version":"1.0.0"}}`))
	c.mustRead(0x40) // PUBACK
	if topic, body := c.publishOf(); topic != "/sys/en/d1/ota/device/inform_reply" || body != `{"id":"1","code":200,"data":{}}` {
		t.Fatalf("got %s %s", topic, body)
	}
	calls := e.devices.waitFor(t, "inform", func(calls []call) bool { return count(calls, "inform", "d1") == 1 })
	if m := calls[len(calls)-1].msg.(wire.Inform); m.Modules["default"] != "1.0.0" {
		t.Fatalf("inform %+v", m)
	}
	if code := c.subscribe("/sys/en/d1/ota/device/#"); code != 1 {
		t.Fatalf("SUBACK %d for a filter in the device's tree", code)
	}
	sha := strings.Repeat("ab", 32)
	up := wire.Upgrade{Job: "7", Attempt: 1, Module: "default", Version: "1.1.0", Size: 10, SHA256: sha, URL: "http://x/dl/7", Mode: wire.ModePush,
		Signature: base64.StdEncoding.EncodeToString(make([]byte, 64))}
	e.b.Send("en", "d1", string(wire.KindUpgrade), wire.Encode(up))
	topic, body := c.publishOf()
	want := `{"id":"7","version":"1.0","method":"ota.device.upgrade","params":{"version":"1.1.0","sign":"` + sha + `","signMethod":"sha256","fileUrl":"http://x/dl/7","fileSize":10}}`
	if topic != "/sys/en/d1/ota/device/upgrade" || body != want {
		t.Fatalf("got %s %s, want the upgrade in EnOS's form", topic, body)
	}
	c.publish1("/sys/en/d1/ota/device/progress", []byte(`{"id":5,"params":{"step":"-2","desc":"timeout"}}`))
	c.mustRead(0x40)
	if topic, body := c.publishOf(); topic != "/sys/en/d1/ota/device/progress_reply" || body != `{"id":5,"code":200,"data":{}}` {
		t.Fatalf("got %s %s", topic, body)
	}
	calls = e.devices.waitFor(t, "progress", func(calls []call) bool { return count(calls, "progress", "d1") == 1 })
	p := calls[len(calls)-1].msg.(wire.Progress)
	if p != (wire.Progress{Job: "7", Attempt: 1, State: wire.StateFailed, Code: "download_failed", Message: "timeout"}) {
		t.Fatalf("progress %+v", p)
	}
	c.publish1("/sys/en/d1/ota/device/progress", []byte(`{"id":"6","params":{"step":"lots"}}`))
	c.mustRead(0x40)
	if topic, body := c.publishOf(); topic != "/sys/en/d1/ota/device/progress_reply" || body[:len(`{"id":"6","code":460`)] != `{"id":"6","code":460` {
		t.Fatalf("malformed progress answered %s %s", topic, body)
	}
	// The only messages were those above: no duplicate through the
	// device's own subscription comes before the answer to a PINGREQ.
	c.write(0xc0, nil)
	c.mustRead(0xd0)
}

func TestEnOSACLRules(t *testing.T) {
	d := &engine.Device{ID: 1, Product: "en", Key: "d1"}
	tests := []struct {
		topic            string
		publish, receive bool
	}{
		{"/sys/en/d1/ota/device/inform", true, true},
		{"/sys/en/d1/thing/service/#", true, true},
		{"/sys/en/d1/#", true, true},
		{"/sys/en/d2/ota/device/upgrade", false, false},
		{"/sys/en/+/ota/device/upgrade", false, false},
		{"/sys/en/d1", false, false},
		{"/sys/#", false, false},
		{"otter/v1/en/d1/inform", true, false},
		{"otter/v1/en/d1/upgrade", true, true},
	}
	for _, tt := range tests {
		if got := mayPublish(d, true, tt.topic); got != tt.publish {
			t.Errorf("mayPublish(EnOS login, %q) = %v, want %v", tt.topic, got, tt.publish)
		}
		if got := mayReceive(d, true, tt.topic); got != tt.receive {
			t.Errorf("mayReceive(EnOS login, %q) = %v, want %v", tt.topic, got, tt.receive)
		}
		if strings.HasPrefix(tt.topic, "/sys/") && (mayPublish(d, false, tt.topic) || mayReceive(d, false, tt.topic)) {
			t.Errorf("an otter login may use the EnOS topic %q", tt.topic)
		}
	}
}

// A message that is not EnOS's envelope (not JSON, not an object, too
// large) is the device's mistake: it is acknowledged and answered 460 on
// the _reply topic, and the connection stays, rather than being closed as
// for a message the server failed to store, which the device would send
// again at every reconnect.
func TestEnOSMalformedEnvelopeAnswered460(t *testing.T) {
	e := newEnOSEnv(t)
	c := dialRaw(t, e.b.Addr())
	if code := e.login(t, c, time.Now(), e.secret); code != 0 {
		t.Fatalf("CONNACK %d", code)
	}
	for name, payload := range map[string]string{
		"truncated JSON": `{"id":"3"`,
		"not an object":  `[1,2]`,
		"too large":      `{"id":"4","params":{"version":"1.0.0"},"pad":"` + strings.Repeat("x", 17000) + `"}`,
	} {
		c.publish1("/sys/en/d1/ota/device/inform", []byte(payload))
		c.mustRead(0x40) // PUBACK: stored nothing, but taken
		topic, body := c.publishOf()
		if topic != "/sys/en/d1/ota/device/inform_reply" || !strings.Contains(body, `"code":460`) {
			t.Fatalf("%s: answered %s %s, want code 460 on inform_reply", name, topic, body)
		}
	}
	// Still connected: a PINGREQ is answered.
	c.write(0xc0, nil)
	c.mustRead(0xd0)
	if n := count(e.devices.snapshot(), "inform", "d1"); n != 0 {
		t.Fatalf("%d informs reached the engine, want none", n)
	}
}
