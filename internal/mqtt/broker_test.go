package mqtt

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/google/go-cmp/cmp"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/internal/store/storetest"
	"github.com/otter-ota/otter/sdk/wire"
)

func TestACLRules(t *testing.T) {
	a := &engine.Device{ID: 1, Product: "p", Key: "a"}
	tests := []struct {
		topic            string
		publish, receive bool
	}{
		{"otter/v1/p/a/inform", true, false},
		{"otter/v1/p/a/progress", true, false},
		{"otter/v1/p/a/status", true, false}, // own tree: answered with unknown_topic
		{"otter/v1/p/a/upgrade", true, true},
		{"otter/v1/p/a/reply", true, true},
		{"otter/v1/p/a/+", true, true},
		{"otter/v1/p/a/#", true, true},
		{"otter/v1/p/a/upgrade/x", true, false},
		{"otter/v1/p/b/inform", false, false},
		{"otter/v1/p/b/upgrade", false, false},
		{"otter/v1/p/ab/upgrade", false, false},
		{"otter/v1/p/a", false, false},
		{"otter/v1/p/+/upgrade", false, false},
		{"otter/v1/+/a/upgrade", false, false},
		{"otter/v1/#", false, false},
		{"#", false, false},
		{"$SYS/#", false, false},
		{"$share/g/otter/v1/p/a/upgrade", false, false},
		{"otter/v1/q/a/upgrade", false, false},
	}
	for _, tt := range tests {
		if got := mayPublish(a, false, tt.topic); got != tt.publish {
			t.Errorf("mayPublish(a, %q) = %v, want %v", tt.topic, got, tt.publish)
		}
		if got := mayReceive(a, false, tt.topic); got != tt.receive {
			t.Errorf("mayReceive(a, %q) = %v, want %v", tt.topic, got, tt.receive)
		}
		if mayPublish(nil, false, tt.topic) || mayReceive(nil, false, tt.topic) {
			t.Errorf("a client without a device may use %q", tt.topic)
		}
	}
}

func TestConnectChecksCredentials(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name, user, password string
		want                 byte
		reason               string
	}{
		{"right secret", "p/a", e.secrets["a"], 0, ""},
		{"wrong secret", "p/a", e.secrets["b"], v5BadCredentials, refusedSecret},
		{"no password", "p/a", "", v5BadCredentials, refusedSecret},
		{"unknown device", "p/ghost", e.secrets["a"], v5BadCredentials, refusedUnknown},
		{"unknown product", "q/a", e.secrets["a"], v5BadCredentials, refusedUnknown},
		{"user name without product", "a", e.secrets["a"], v5BadCredentials, refusedUsername},
		{"wildcard in user name", "p/+", e.secrets["a"], v5BadCredentials, refusedUsername},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before float64
			if tt.reason != "" {
				before = testutil.ToFloat64(e.b.metrics.authFailures.WithLabelValues(tt.reason))
			}
			code, _ := dial(t, e.b.Addr(), connectOpts{user: tt.user, password: tt.password})
			if code != tt.want {
				t.Fatalf("CONNACK 0x%02x, want 0x%02x", code, tt.want)
			}
			if tt.reason != "" {
				if got := testutil.ToFloat64(e.b.metrics.authFailures.WithLabelValues(tt.reason)); got != before+1 {
					t.Errorf("auth failures{reason=%s} = %v, want %v", tt.reason, got, before+1)
				}
			}
		})
	}
}

func TestConnectMQTT311(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name, user, password string
		want                 byte
	}{
		{"right secret", "p/a", e.secrets["a"], 0x00},
		{"wrong secret", "p/a", "nope", v3BadCredentials},
		{"unknown device", "p/ghost", e.secrets["a"], v3BadCredentials},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, e.b.Addr())
			if got := c.connect("dev-311", tt.user, tt.password); got != tt.want {
				t.Fatalf("CONNACK return code 0x%02x, want 0x%02x", got, tt.want)
			}
			if tt.want != 0 {
				if _, _, err := c.read(); !errors.Is(err, io.EOF) {
					t.Errorf("after a refusal: %v, want the connection closed", err)
				}
				return
			}
			if got := c.subscribe("otter/v1/p/a/upgrade"); got != 1 {
				t.Errorf("SUBACK 0x%02x, want QoS 1 granted", got)
			}
			e.b.Send("p", "a", "upgrade", []byte(`{"job":"1"}`))
			body := c.mustRead(0x30)
			if !strings.Contains(string(body), "otter/v1/p/a/upgrade") {
				t.Errorf("PUBLISH %q, want the upgrade topic", body)
			}
		})
	}
}

func TestConnectStoreUnavailable(t *testing.T) {
	e := newEnv(t)
	st := storetest.Open(t)
	b := startBroker(t, Config{Addr: "127.0.0.1:0", Devices: e.devices, Credentials: st})
	st.Close() // every lookup now fails as an outage, not as an unknown device

	if code, _ := dial(t, b.Addr(), connectOpts{user: "p/a", password: e.secrets["a"]}); code != v5Unavailable {
		t.Errorf("MQTT 5 CONNACK 0x%02x, want 0x%02x (server unavailable)", code, v5Unavailable)
	}
	c := dialRaw(t, b.Addr())
	if code := c.connect("x", "p/a", e.secrets["a"]); code != v3Unavailable {
		t.Errorf("MQTT 3.1.1 CONNACK 0x%02x, want 0x%02x (server unavailable)", code, v3Unavailable)
	}
	if got := testutil.ToFloat64(b.metrics.authFailures.WithLabelValues(refusedUnavailable)); got != 2 {
		t.Errorf("auth failures{reason=unavailable} = %v, want 2", got)
	}
}

func TestConnectRefusesWillOutsideOwnTree(t *testing.T) {
	e := newEnv(t)
	fake := &paho.WillMessage{Topic: "otter/v1/p/b/upgrade", QoS: 1, Payload: []byte(`{"job":"666"}`)}
	code, _ := dial(t, e.b.Addr(), connectOpts{user: "p/a", password: e.secrets["a"], will: fake})
	if code != v5NotAuthorized {
		t.Errorf("CONNACK 0x%02x, want 0x%02x (not authorized)", code, v5NotAuthorized)
	}
	own := &paho.WillMessage{Topic: "otter/v1/p/a/status", QoS: 1, Payload: []byte("gone")}
	if code, _ := dial(t, e.b.Addr(), connectOpts{user: "p/a", password: e.secrets["a"], will: own}); code != 0 {
		t.Errorf("will in the own tree: CONNACK 0x%02x, want success", code)
	}
}

func TestSubscribeOnlyOwnDownlinks(t *testing.T) {
	e := newEnv(t)
	a := e.connect(t, "a", "")
	tests := []struct {
		filter string
		want   byte
	}{
		{"otter/v1/p/b/upgrade", v5NotAuthorized},
		{"otter/v1/p/b/#", v5NotAuthorized},
		{"otter/v1/p/+/upgrade", v5NotAuthorized},
		{"otter/v1/p/a/inform", v5NotAuthorized},
		{"#", v5NotAuthorized},
		{"otter/v1/p/a/upgrade", 1},
		{"otter/v1/p/a/reply", 1},
		{"otter/v1/p/a/+", 1},
	}
	for _, tt := range tests {
		if got := a.subscribe(t, tt.filter); got != tt.want {
			t.Errorf("SUBSCRIBE %s: SUBACK 0x%02x, want 0x%02x", tt.filter, got, tt.want)
		}
	}
	if got := testutil.ToFloat64(e.b.metrics.aclDenied.WithLabelValues("subscribe")); got != 5 {
		t.Errorf("acl denied{action=subscribe} = %v, want 5", got)
	}

	c := dialRaw(t, e.b.Addr())
	if code := c.connect("raw-b", "p/b", e.secrets["b"]); code != 0 {
		t.Fatalf("CONNACK 0x%02x", code)
	}
	if got := c.subscribe("otter/v1/p/a/upgrade"); got != 0x80 {
		t.Errorf("MQTT 3.1.1 SUBACK 0x%02x for another device's topic, want 0x80 (failure)", got)
	}
}

func TestPublishOnlyOwnTree(t *testing.T) {
	e := newEnv(t)
	a := e.connect(t, "a", "")
	inform := wire.Encode(wire.Inform{Modules: map[string]string{"default": "1.0.0"}})

	if code, err := a.publish("otter/v1/p/b/inform", inform); err != nil || code != v5NotAuthorized {
		t.Errorf("publish to b's topic: PUBACK 0x%02x, %v; want 0x%02x", code, err, v5NotAuthorized)
	}
	if code, err := a.publish("otter/v1/p/a/inform", inform); err != nil || code != 0 {
		t.Fatalf("publish to own topic: PUBACK 0x%02x, %v", code, err)
	}
	calls := e.devices.snapshot()
	if n := count(calls, "inform", "b"); n != 0 {
		t.Errorf("b's handler saw %d informs published by a", n)
	}
	if n := count(calls, "inform", "a"); n != 1 {
		t.Errorf("a's handler saw %d informs, want 1", n)
	}
	if got := testutil.ToFloat64(e.b.metrics.aclDenied.WithLabelValues("publish")); got != 1 {
		t.Errorf("acl denied{action=publish} = %v, want 1", got)
	}

	// MQTT 3.1.1 has no negative PUBACK: mochi closes the connection.
	c := dialRaw(t, e.b.Addr())
	if code := c.connect("raw-a", "p/a", e.secrets["a"]); code != 0 {
		t.Fatalf("CONNACK 0x%02x", code)
	}
	c.publish1("otter/v1/p/b/inform", inform)
	for {
		typ, _, err := c.read()
		if err != nil {
			break
		}
		if typ&0xf0 == 0x40 {
			t.Fatal("PUBACK for a publish to another device's topic")
		}
	}
	if n := count(e.devices.snapshot(), "inform", "b"); n != 0 {
		t.Errorf("b's handler saw %d informs published by a", n)
	}
}

func TestDownlinksReachOnlyTheirDevice(t *testing.T) {
	e := newEnv(t)
	a := e.connect(t, "a", "")
	b := e.connect(t, "b", "")
	a.subscribe(t, "otter/v1/p/a/#")
	a.subscribe(t, "otter/v1/+/+/upgrade") // denied
	b.subscribe(t, "otter/v1/p/b/upgrade")

	e.b.Send("p", "b", "upgrade", []byte(`{"job":"2"}`))
	e.b.Send("p", "a", "upgrade", []byte(`{"job":"1"}`))

	if p := b.next(t); p.Topic != "otter/v1/p/b/upgrade" || string(p.Payload) != `{"job":"2"}` || p.QoS != 1 {
		t.Errorf("b got %s %s at QoS %d", p.Topic, p.Payload, p.QoS)
	}
	// a's first message must be its own: b's was sent before it.
	if p := a.next(t); p.Topic != "otter/v1/p/a/upgrade" {
		t.Errorf("a got a message on %s", p.Topic)
	}
	if got := testutil.ToFloat64(e.b.metrics.downlinks.WithLabelValues("upgrade")); got != 2 {
		t.Errorf("downlinks{kind=upgrade} = %v, want 2", got)
	}
}

func TestBadUplinksGetErrorReply(t *testing.T) {
	e := newEnv(t)
	a := e.connect(t, "a", "")
	a.subscribe(t, "otter/v1/p/a/reply")
	tests := []struct {
		name, topic string
		payload     []byte
		code        string
		to          wire.Kind
	}{
		{"not JSON", "otter/v1/p/a/inform", []byte("hello"), wire.CodeMalformed, wire.KindInform},
		{"broken rule", "otter/v1/p/a/progress", []byte(`{"job":"1","state":"dancing"}`), wire.CodeMalformed, wire.KindProgress},
		{"oversized", "otter/v1/p/a/inform", []byte(`{"modules":{"default":"1"},"pad":"` + strings.Repeat("x", wire.MaxMessageSize) + `"}`), wire.CodeTooLarge, wire.KindInform},
		{"unknown kind", "otter/v1/p/a/status", []byte(`{}`), wire.CodeUnknownTopic, "status"},
		{"downlink kind", "otter/v1/p/a/upgrade", []byte(`{}`), wire.CodeUnknownTopic, wire.KindUpgrade},
		{"deeper topic", "otter/v1/p/a/inform/x", []byte(`{}`), wire.CodeUnknownTopic, "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := testutil.ToFloat64(e.b.metrics.uplinkErrors.WithLabelValues(tt.code))
			if code, err := a.publish(tt.topic, tt.payload); err != nil || code != 0 {
				t.Fatalf("PUBACK 0x%02x, %v; want success (the message is taken, and answered)", code, err)
			}
			r := a.reply(t, "otter/v1/p/a/reply")
			if r.Error != tt.code || r.To != tt.to || r.Message == "" {
				t.Errorf("reply %+v, want error %s to %s with a message", r, tt.code, tt.to)
			}
			if got := testutil.ToFloat64(e.b.metrics.uplinkErrors.WithLabelValues(tt.code)); got != before+1 {
				t.Errorf("uplink errors{code=%s} = %v, want %v", tt.code, got, before+1)
			}
		})
	}
	for _, c := range e.devices.snapshot() {
		if c.msg != nil {
			t.Errorf("the engine got %s %+v", c.op, c.msg)
		}
	}
}

func TestUplinkHandledBeforePuback(t *testing.T) {
	e := newEnv(t)
	a := e.connect(t, "a", "")
	a.subscribe(t, "otter/v1/p/a/reply")
	entered, release := make(chan call, 1), make(chan struct{})
	e.devices.setHandle(func(c call) (*engine.Answer, error) {
		if c.op != "request" {
			return nil, nil
		}
		entered <- c
		<-release
		return &engine.Answer{Kind: wire.KindReply, Message: wire.Reply{To: wire.KindRequest, Module: "default", Error: wire.CodeNoUpgrade}}, nil
	})

	acked := make(chan error, 1)
	go func() {
		code, err := a.publish("otter/v1/p/a/request", wire.Encode(wire.Request{Module: "default", Version: "1.0.0"}))
		if err == nil && code != 0 {
			err = errors.New("negative PUBACK")
		}
		acked <- err
	}()
	var got call
	select {
	case got = <-entered:
	case <-time.After(waitTimeout):
		t.Fatal("the request never reached the engine")
	}
	want := call{op: "request", dev: e.dev("a"), msg: wire.Request{Module: "default", Version: "1.0.0"}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(call{})); diff != "" {
		t.Errorf("engine call (-want +got):\n%s", diff)
	}
	select {
	case err := <-acked:
		t.Fatalf("the publish completed (%v) while the engine had not returned", err)
	default:
	}
	close(release)
	if err := <-acked; err != nil {
		t.Fatalf("publish: %v", err)
	}
	if r := a.reply(t, "otter/v1/p/a/reply"); r.Error != wire.CodeNoUpgrade || r.To != wire.KindRequest {
		t.Errorf("answer %+v, want the engine's no_upgrade reply", r)
	}
	if got := testutil.ToFloat64(e.b.metrics.uplinks.WithLabelValues("request")); got != 1 {
		t.Errorf("uplinks{kind=request} = %v, want 1", got)
	}
}

func TestEngineErrorMeansNoPuback(t *testing.T) {
	e := newEnv(t)
	e.devices.setHandle(func(c call) (*engine.Answer, error) {
		if c.msg != nil {
			return nil, errors.New("database is locked")
		}
		return nil, nil
	})
	inform := wire.Encode(wire.Inform{Modules: map[string]string{"default": "1.0.0"}})

	c := dialRaw(t, e.b.Addr())
	if code := c.connect("raw-a", "p/a", e.secrets["a"]); code != 0 {
		t.Fatalf("CONNACK 0x%02x", code)
	}
	c.publish1("otter/v1/p/a/inform", inform)
	for {
		typ, _, err := c.read()
		if errors.Is(err, io.EOF) {
			break // closed, so that the device sends the message again
		}
		if err != nil {
			t.Fatalf("want the connection closed: %v", err)
		}
		if typ&0xf0 == 0x40 {
			t.Fatal("PUBACK for a message the engine did not store")
		}
	}

	a := e.connect(t, "a", "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { <-a.c.Done(); cancel() }() // the broker closes the connection
	if r, err := a.c.Publish(ctx, &paho.Publish{Topic: "otter/v1/p/a/inform", QoS: 1, Payload: inform}); err == nil {
		t.Errorf("MQTT 5 publish acknowledged (%+v), want no PUBACK", r)
	}
	select {
	case <-a.c.Done():
	case <-time.After(waitTimeout):
		t.Fatal("MQTT 5 connection still open after a message that was not stored")
	}
	if n := count(e.devices.snapshot(), "inform", "a"); n != 2 {
		t.Errorf("engine saw %d informs, want 2", n)
	}
	if got := testutil.ToFloat64(e.b.metrics.uplinkErrors.WithLabelValues(wire.CodeUnavailable)); got != 2 {
		t.Errorf("uplink errors{code=unavailable} = %v, want 2", got)
	}
}

func TestPresence(t *testing.T) {
	e := newEnv(t)
	a := e.connect(t, "a", "one")
	e.devices.waitFor(t, "Connected", func(c []call) bool { return count(c, "Connected", "a") == 1 })
	a.c.Disconnect(&paho.Disconnect{})
	calls := e.devices.waitFor(t, "Disconnected", func(c []call) bool { return count(c, "Disconnected", "a") == 1 })
	if diff := cmp.Diff([]call{{op: "Connected", dev: e.dev("a")}, {op: "Disconnected", dev: e.dev("a")}}, calls,
		cmp.AllowUnexported(call{})); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

func TestPresenceTakeoverIsNotOffline(t *testing.T) {
	e := newEnv(t)
	e.connect(t, "a", "same")
	e.devices.waitFor(t, "Connected", func(c []call) bool { return count(c, "Connected", "a") == 1 })
	second := e.connect(t, "a", "same") // takes the session over
	e.devices.waitFor(t, "Connected", func(c []call) bool { return count(c, "Connected", "a") == 2 })
	waitClients(t, e.b, 1) // the first connection is gone, OnDisconnect included

	if got := ops(e.devices.snapshot(), "a"); !cmp.Equal(got, []string{"Connected", "Connected"}) {
		t.Fatalf("after a takeover: %v, want no Disconnected", got)
	}
	if n := e.b.presence.count(e.ids["a"]); n != 1 {
		t.Errorf("counted connections %d, want 1", n)
	}
	second.c.Disconnect(&paho.Disconnect{})
	e.devices.waitFor(t, "Disconnected", func(c []call) bool { return count(c, "Disconnected", "a") == 1 })
	waitClients(t, e.b, 0)
	if got := ops(e.devices.snapshot(), "a"); !cmp.Equal(got, []string{"Connected", "Connected", "Disconnected"}) {
		t.Errorf("calls %v", got)
	}
}

func TestPresenceTwoConnections(t *testing.T) {
	e := newEnv(t)
	one := e.connect(t, "a", "one")
	two := e.connect(t, "a", "two")
	e.devices.waitFor(t, "Connected", func(c []call) bool { return count(c, "Connected", "a") == 2 })
	one.c.Disconnect(&paho.Disconnect{})
	waitClients(t, e.b, 1)
	if n := count(e.devices.snapshot(), "Disconnected", "a"); n != 0 {
		t.Fatalf("device reported offline while its second connection is open")
	}
	two.c.Disconnect(&paho.Disconnect{})
	e.devices.waitFor(t, "Disconnected", func(c []call) bool { return count(c, "Disconnected", "a") == 1 })
}

func TestClientIDsAreNamespacedPerDevice(t *testing.T) {
	e := newEnv(t)
	a := e.connect(t, "a", "shared-id")
	a.subscribe(t, "otter/v1/p/a/upgrade")
	e.connect(t, "b", "shared-id") // must not take a's session over
	waitClients(t, e.b, 2)
	e.b.Send("p", "a", "upgrade", []byte(`{"job":"1"}`))
	if p := a.next(t); p.Topic != "otter/v1/p/a/upgrade" {
		t.Errorf("a got %s", p.Topic)
	}
	if n := count(e.devices.snapshot(), "Disconnected", "a"); n != 0 {
		t.Errorf("b's connection with a's client id disconnected a")
	}
}

// A new session subscribes after its CONNACK. The engine sends a device's
// pending commands when it connects (before the subscription) and starts
// queued jobs soon after (before or after it): each command reaches the
// device once, and the device is reported connected once.
func TestPendingCommandReachesANewSessionOnce(t *testing.T) {
	for _, tc := range []struct {
		name  string
		delay bool // the command is sent after the subscription
	}{{"sent at connect", false}, {"sent after the subscription", true}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			subscribed := make(chan struct{})
			e.devices.setHandle(func(c call) (*engine.Answer, error) {
				if c.op != "Connected" {
					return nil, nil
				}
				send := func() { e.b.Send(c.dev.Product, c.dev.Key, "upgrade", []byte(`{"job":"7"}`)) }
				if tc.delay {
					go func() { <-subscribed; send() }()
				} else {
					send()
				}
				return nil, nil
			})
			a := e.connect(t, "a", "")
			a.subscribe(t, "otter/v1/p/a/reply")   // not upgrade commands
			a.subscribe(t, "otter/v1/p/a/upgrade") // the first that is
			close(subscribed)
			a.subscribe(t, "otter/v1/p/a/+") // changes nothing
			if p := a.next(t); p.Topic != "otter/v1/p/a/upgrade" || string(p.Payload) != `{"job":"7"}` {
				t.Errorf("got %s %s", p.Topic, p.Payload)
			}
			select {
			case p := <-a.received:
				t.Errorf("the command came twice: %s %s", p.Topic, p.Payload)
			case <-time.After(500 * time.Millisecond): // a window to see a second one in
			}
			if got := ops(e.devices.snapshot(), "a"); !cmp.Equal(got, []string{"Connected"}) {
				t.Errorf("calls %v, want one Connected", got)
			}
		})
	}
}

func TestTakenPortNamesTheFlag(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	e := newEnv(t)
	cert, key := writeCert(t)
	tests := []struct {
		cfg  Config
		flag string
	}{
		{Config{Addr: taken.Addr().String()}, "--mqtt"},
		{Config{Addr: "127.0.0.1:0", TLSAddr: taken.Addr().String(), TLSCertFile: cert, TLSKeyFile: key}, "--mqtt-tls"},
	}
	for _, tt := range tests {
		tt.cfg.Devices, tt.cfg.Credentials = e.devices, e.st
		_, err := New(tt.cfg)
		if err == nil || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), "with "+tt.flag+" ") {
			t.Errorf("New: %v, want an error naming %s", err, tt.flag)
		}
		// The example is another address than the taken one.
		if err != nil && strings.Contains(err.Error(), "for example "+tt.flag+" "+taken.Addr().String()+")") {
			t.Errorf("New: %v, suggests the taken address", err)
		}
	}
}

func TestTLS(t *testing.T) {
	e := newEnv(t)
	cert, key := writeCert(t)
	b := startBroker(t, Config{Addr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0", TLSCertFile: cert, TLSKeyFile: key,
		Devices: e.devices, Credentials: e.st})
	pool := x509.NewCertPool()
	certPEM, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(certPEM)
	nc, err := tls.Dial("tcp", b.TLSAddr().String(), &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	if code, d := handshake(t, nc, connectOpts{user: "p/a", password: e.secrets["a"]}); d == nil {
		t.Fatalf("CONNACK over TLS 0x%02x", code)
	}
	if b.TLSAddr() == nil || e.b.TLSAddr() != nil {
		t.Errorf("TLSAddr %v and %v, want one only where TLS is configured", b.TLSAddr(), e.b.TLSAddr())
	}
}

func TestMetricsRegistered(t *testing.T) {
	e := newEnv(t)
	families, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	want := []string{"otter_mqtt_acl_denied_total", "otter_mqtt_auth_failures_total", "otter_mqtt_connected_clients",
		"otter_mqtt_connects_total", "otter_mqtt_downlinks_total", "otter_mqtt_revoked_sessions_total", "otter_mqtt_uplink_errors_total",
		"otter_mqtt_uplink_seconds", "otter_mqtt_uplinks_total"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
	if _, err := New(Config{Addr: "127.0.0.1:0", Devices: e.devices, Credentials: e.st, Metrics: e.reg}); err == nil {
		t.Error("a second broker on the same registry: no error")
	}
}

func TestCloseReportsDevicesOffline(t *testing.T) {
	e := newEnv(t)
	e.connect(t, "a", "")
	e.connect(t, "b", "")
	e.devices.waitFor(t, "Connected", func(c []call) bool { return count(c, "Connected", "a")+count(c, "Connected", "b") == 2 })
	e.b.Close()
	calls := e.devices.snapshot()
	if count(calls, "Disconnected", "a") != 1 || count(calls, "Disconnected", "b") != 1 {
		t.Errorf("after Close: %v, want both devices reported offline", calls)
	}
}

// waitClients waits until mochi counts n connected clients; it counts a
// client down after OnDisconnect has returned.
func waitClients(t *testing.T, b *Broker, n int64) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for atomic.LoadInt64(&b.srv.Info.ClientsConnected) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d clients connected, want %d", atomic.LoadInt64(&b.srv.Info.ClientsConnected), n)
		}
		time.Sleep(time.Millisecond) // polling a condition with a deadline
	}
}

// writeCert writes a self-signed certificate for localhost.
func writeCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	must(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	must(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600))
	return certFile, keyFile
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// Uplinks go to the engine only: even a subscriber that bypasses the ACL
// (an inline subscription) never sees them.
func TestUplinksAreNotForwarded(t *testing.T) {
	e := newEnv(t)
	var forwarded atomic.Int32
	err := e.b.srv.Subscribe("#", 1, func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
		if strings.HasSuffix(pk.TopicName, "/inform") {
			forwarded.Add(1)
		}
	})
	must(t, err)
	a := e.connect(t, "a", "")
	if code, err := a.publish("otter/v1/p/a/inform", wire.Encode(wire.Inform{Modules: map[string]string{"default": "1"}})); err != nil || code != 0 {
		t.Fatalf("PUBACK 0x%02x, %v", code, err)
	}
	// The connection handles its packets in order: once this SUBACK is
	// back, the inform has been through mochi's forwarding.
	a.subscribe(t, "otter/v1/p/a/reply")
	if n := forwarded.Load(); n != 0 {
		t.Errorf("the inform was forwarded to %d subscribers", n)
	}
	if n := count(e.devices.snapshot(), "inform", "a"); n != 1 {
		t.Errorf("engine saw %d informs, want 1", n)
	}
}

// Close must not hang while devices connect and leave (mochi's own close
// path can deadlock then; see listener).
func TestCloseWhileDevicesComeAndGo(t *testing.T) {
	e := newEnv(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				nc, err := net.Dial("tcp", e.b.Addr().String())
				if err != nil {
					return // the broker is closed
				}
				nc.SetDeadline(time.Now().Add(waitTimeout))
				nc.Write(packet(0x10, connectBody("churn", "p/a", e.secrets["a"])))
				bufio.NewReader(nc).ReadByte() // CONNACK, or the close
				nc.Close()
			}
		}()
	}
	e.devices.waitFor(t, "some connections", func(c []call) bool { return count(c, "Connected", "a") >= 20 })
	closed := make(chan struct{})
	go func() { e.b.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(waitTimeout):
		t.Fatal("Close hangs while devices connect and disconnect")
	}
	close(stop)
	wg.Wait()
	if n := e.b.presence.count(e.ids["a"]); n != 0 {
		t.Errorf("after Close, %d connections of a still counted", n)
	}
	calls := e.devices.snapshot()
	if last := calls[len(calls)-1]; last.op != "Disconnected" {
		t.Errorf("last report %s, want Disconnected", last.op)
	}
}

func TestPacketOverLimitClosesConnection(t *testing.T) {
	e := newEnv(t)
	c := dialRaw(t, e.b.Addr())
	if code := c.connect("big", "p/a", e.secrets["a"]); code != 0 {
		t.Fatalf("CONNACK 0x%02x", code)
	}
	body := append(mqttString("otter/v1/p/a/inform"), 0, 1)
	c.nc.Write(packet(0x32, append(body, make([]byte, maxPacketSize)...))) // the broker may close before the end
	for {
		typ, _, err := c.read()
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			break
		}
		if err != nil {
			t.Fatalf("want the connection closed: %v", err)
		}
		if typ&0xf0 == 0x40 {
			t.Fatal("PUBACK for a packet over the limit")
		}
	}
	e.devices.waitFor(t, "Disconnected", func(c []call) bool { return count(c, "Disconnected", "a") == 1 })
	if got := testutil.ToFloat64(e.b.metrics.uplinkErrors.WithLabelValues(wire.CodeTooLarge)); got != 1 {
		t.Errorf("uplink errors{code=too_large} = %v, want 1", got)
	}
	if n := count(e.devices.snapshot(), "inform", "a"); n != 0 {
		t.Errorf("engine saw %d informs", n)
	}
}

func TestCredentialsChangedClosesEverySessionOfTheDeviceAtOnce(t *testing.T) {
	e := newEnv(t)
	a1 := e.connect(t, "a", "one")
	a2 := e.connect(t, "a", "two")
	b := e.connect(t, "b", "")
	for _, d := range []*device{a1, a2} {
		d.subscribe(t, "otter/v1/p/a/upgrade")
	}
	b.subscribe(t, "otter/v1/p/b/upgrade")
	e.b.CredentialsChanged("p", "a")
	for i, d := range []*device{a1, a2} {
		select {
		case <-d.c.Done():
		case <-time.After(waitTimeout):
			t.Fatalf("session %d of a is still open", i+1)
		}
	}
	e.b.Send("p", "b", "upgrade", []byte(`{"job":"1"}`))
	if p := b.next(t); p.Topic != "otter/v1/p/b/upgrade" {
		t.Errorf("b got %s", p.Topic)
	}
	e.devices.waitFor(t, "a's disconnection", func(c []call) bool { return count(c, "Disconnected", "a") == 1 })
	if again := e.connect(t, "a", "one"); again == nil {
		t.Fatal("a cannot log in again with its secret")
	}
}

// Even unannounced, a session of a deleted device ends when the device
// created again with its key logs in, and never receives its messages.
func TestNewerDeviceOfTheSameKeyClosesTheOlderOnesSessions(t *testing.T) {
	e := newEnv(t)
	old := e.connect(t, "a", "one")
	old.subscribe(t, "otter/v1/p/a/upgrade")
	ctx := context.Background()
	if err := e.st.DeleteDevice(ctx, "p", "a"); err != nil {
		t.Fatal(err)
	}
	secret, err := credential.NewDeviceSecret()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.CreateDevices(ctx, []store.NewDevice{{Product: "p", Key: "a", SecretHash: credential.Hash(secret)}}); err != nil {
		t.Fatal(err)
	}
	e.secrets["a"] = secret
	fresh := e.connect(t, "a", "two")
	fresh.subscribe(t, "otter/v1/p/a/upgrade")
	select {
	case <-old.c.Done():
	case <-time.After(waitTimeout):
		t.Fatal("the deleted device's session is still open")
	}
	e.b.Send("p", "a", "upgrade", []byte(`{"job":"9"}`))
	if p := fresh.next(t); string(p.Payload) != `{"job":"9"}` {
		t.Errorf("new device got %s", p.Payload)
	}
	select {
	case p := <-old.received:
		t.Errorf("the deleted device's session received %s", p.Payload)
	default:
	}
}
