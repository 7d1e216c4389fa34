package dynsec

import (
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

// A device may subscribe only to its own upgrade and reply topics, by name
// or with a wildcard as the last level of its own tree: the same rule as
// the embedded broker's (internal/mqtt/acl.go mayReceive).
func TestDeviceSubscribesOnlyToItsOwnDownlinks(t *testing.T) {
	e := newEnv(t)
	a, b, qa := dev("p", "a"), dev("p", "b"), dev("q", "a")
	e.create(t, a, b, qa)
	c := e.login(t, a, session{})
	for _, tc := range []struct {
		filter string
		ok     bool
	}{
		{"otter/v1/p/a/upgrade", true},
		{"otter/v1/p/a/reply", true},
		{"otter/v1/p/a/+", true},
		{"otter/v1/p/a/#", true},
		{"otter/v1/p/a/inform", false},
		{"otter/v1/p/a", false},
		{"otter/v1/p/a/upgrade/x", false},
		{"otter/v1/p/b/upgrade", false},
		{"otter/v1/p/b/#", false},
		{"otter/v1/p/+/upgrade", false},
		{"otter/v1/+/a/upgrade", false},
		{"otter/v1/+/+/+", false},
		{"otter/v1/#", false},
		{"#", false},
		{"otter/v1/q/a/upgrade", false},
		{"$share/g/otter/v1/p/b/upgrade", false},
		{"$share/g/otter/v1/+/+/inform", false},
		{"$CONTROL/dynamic-security/v1/response", false},
		{"$SYS/#", false},
	} {
		code := c.subscribe(t, tc.filter)
		if granted := code < 0x80; granted != tc.ok {
			t.Errorf("subscribe %s: SUBACK 0x%02x, granted %v; want %v", tc.filter, code, granted, tc.ok)
		}
	}
}

// A device's publishes outside its own tree are dropped: otter's service,
// subscribed to every device topic, receives none of them.
func TestDevicePublishesOnlyInItsOwnTree(t *testing.T) {
	e := newEnv(t)
	a, b, qa := dev("p", "a"), dev("p", "b"), dev("q", "a")
	e.create(t, a, b, qa)
	svc := e.service(t)
	c := e.login(t, a, session{})
	for _, topic := range []string{
		"otter/v1/p/b/inform", "otter/v1/p/b/upgrade", "otter/v1/q/a/inform",
		"otter/v1/p/a", "otter/v1/p/ab/inform", "otter/v1/p", "elsewhere",
		"$CONTROL/dynamic-security/v1",
	} {
		if code := c.publish(t, topic, "forged"); code != 0x87 {
			t.Errorf("publish %s: PUBACK 0x%02x; want 0x87 (not authorized)", topic, code)
		}
	}
	c.publish(t, "otter/v1/p/a/inform", "own")
	svc.expectFirst(t, "otter/v1/p/a/inform", "own")
	// The forged control command did not create anything.
	if devs, err := e.admin.List(testContext(t)); err != nil || len(devs) != 3 {
		t.Errorf("List = %v, %v; want the 3 devices", devs, err)
	}
}

// A device's will is published only in its own tree: a will on another
// device's topic is refused at CONNECT or never published.
func TestDeviceWillOnlyInItsOwnTree(t *testing.T) {
	e := newEnv(t)
	a, b := dev("p", "a"), dev("p", "b")
	e.create(t, a, b)
	svc := e.service(t)
	code, c := e.dial(t, a.Username(), "secret-a", session{will: "otter/v1/p/b/inform"})
	if c != nil {
		c.conn.Close() // no DISCONNECT: the broker publishes the will, if it took it
	} else {
		t.Logf("a will on another device's topic: CONNACK 0x%02x", code)
	}
	own := e.login(t, a, session{will: "otter/v1/p/a/inform"})
	own.conn.Close()
	svc.expectFirst(t, "otter/v1/p/a/inform", "will")
}

// A device receives only its own upgrade and reply messages, even when it
// subscribed to its whole tree: not its own uplinks, not other devices'.
func TestDeviceReceivesOnlyItsOwnDownlinks(t *testing.T) {
	e := newEnv(t)
	a, b := dev("p", "a"), dev("p", "b")
	e.create(t, a, b)
	svc := e.service(t)
	c := e.login(t, a, session{})
	if code := c.subscribe(t, "otter/v1/p/a/#"); code >= 0x80 {
		t.Fatalf("subscribe own tree: 0x%02x", code)
	}
	c.publish(t, "otter/v1/p/a/inform", "own uplink")
	svc.publish(t, "otter/v1/p/a/inform", "uplink from elsewhere")
	svc.publish(t, "otter/v1/p/b/upgrade", "b's upgrade")
	svc.publish(t, "otter/v1/p/a/progress", "not a downlink")
	svc.publish(t, "otter/v1/p/a/reply", "reply")
	c.expectFirst(t, "otter/v1/p/a/reply", "reply")
	svc.publish(t, "otter/v1/p/a/upgrade", "upgrade")
	c.expectFirst(t, "otter/v1/p/a/upgrade", "upgrade")
}

// Client ids are one namespace in Mosquitto (the embedded broker keeps one
// per device). A device that connects with another device's client id and
// asks for its session gets neither the messages queued for it nor later
// ones: every message is checked against the receiving device's own role.
func TestTakingOverAnotherDevicesSessionLeaksNothing(t *testing.T) {
	e := newEnv(t)
	a, b := dev("p", "a"), dev("p", "b")
	e.create(t, a, b)
	svc := e.service(t)
	bs := session{clientID: "otter-p-b", persist: true}
	cb := e.login(t, b, bs)
	if code := cb.subscribe(t, "otter/v1/p/b/upgrade"); code >= 0x80 {
		t.Fatalf("subscribe: 0x%02x", code)
	}
	svc.publish(t, "otter/v1/p/b/upgrade", "delivered")
	cb.expectFirst(t, "otter/v1/p/b/upgrade", "delivered")
	if err := cb.c.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	svc.publish(t, "otter/v1/p/b/upgrade", "queued for b")

	ca := e.login(t, a, bs)
	if code := ca.subscribe(t, "otter/v1/p/a/upgrade"); code >= 0x80 {
		t.Fatalf("subscribe: 0x%02x", code)
	}
	svc.publish(t, "otter/v1/p/b/upgrade", "sent to b later")
	svc.publish(t, "otter/v1/p/a/upgrade", "barrier")
	ca.expectFirst(t, "otter/v1/p/a/upgrade", "barrier")
}

// otter's replicas share the uplinks through a shared subscription, and
// publish downlinks: the otter-service role allows both.
func TestServiceSharesUplinksAndSendsDownlinks(t *testing.T) {
	e := newEnv(t)
	a := dev("p", "a")
	e.create(t, a)
	svc := e.mustDial(t, serviceUser, servicePassword, session{})
	for _, filter := range []string{"$share/otter/otter/v1/+/+/+", "$share/otter/otter/v1/+/+/inform"} {
		if code := svc.subscribe(t, filter); code >= 0x80 {
			t.Fatalf("service subscribe %s: SUBACK 0x%02x", filter, code)
		}
	}
	c := e.login(t, a, session{})
	if code := c.subscribe(t, "otter/v1/p/a/upgrade"); code >= 0x80 {
		t.Fatalf("subscribe: 0x%02x", code)
	}
	c.publish(t, "otter/v1/p/a/request", "req")
	svc.expectFirst(t, "otter/v1/p/a/request", "req")
	if code := svc.publish(t, "otter/v1/p/a/upgrade", "cmd"); code >= 0x80 {
		t.Fatalf("service publish: PUBACK 0x%02x", code)
	}
	c.expectFirst(t, "otter/v1/p/a/upgrade", "cmd")
	if code := svc.publish(t, "$CONTROL/dynamic-security/v1", "{}"); code < 0x80 {
		t.Errorf("the service role may publish to the control topic: PUBACK 0x%02x", code)
	}
}
