package dynsec

import (
	"testing"

	"github.com/otter-ota/otter/internal/brokeradmin"
)

// A device logs in with its user name and secret, and with nothing else.
func TestDeviceLogsInWithItsSecret(t *testing.T) {
	e := newEnv(t)
	a := dev("p", "a")
	e.create(t, a)
	e.login(t, a, session{clientID: "anything"})
	for _, tc := range []struct{ name, user, password string }{
		{"wrong secret", "p/a", "secret-b"},
		{"no secret", "p/a", ""},
		{"unknown device", "p/zz", "secret-a"},
		{"other product", "q/a", "secret-a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, c := e.dial(t, tc.user, tc.password, session{}); c != nil || code < 0x80 {
				t.Errorf("CONNACK 0x%02x; want a refusal", code)
			}
		})
	}
}

// Deleting a device refuses it at once: its open connection is closed and
// a new one refused. Deleting it again is not an error.
func TestDeletedDeviceIsRefusedAtOnce(t *testing.T) {
	e := newEnv(t)
	a, b := dev("p", "a"), dev("p", "b")
	e.create(t, a, b)
	c := e.login(t, a, session{})
	other := e.login(t, b, session{})
	ctx := testContext(t)
	if err := e.admin.DeleteDevice(ctx, a); err != nil {
		t.Fatal(err)
	}
	c.awaitClosed(t)
	if code, c := e.dial(t, a.Username(), "secret-a", session{}); c != nil {
		t.Errorf("deleted device connected (CONNACK 0x%02x)", code)
	}
	if err := e.admin.DeleteDevice(ctx, a); err != nil {
		t.Errorf("delete again: %v", err)
	}
	if devs, err := e.admin.List(ctx); err != nil || len(devs) != 1 || devs[0] != b {
		t.Errorf("List = %v, %v; want [p/b]", devs, err)
	}
	// The other device was not disturbed.
	if code := other.publish(t, "otter/v1/p/b/inform", "{}"); code >= 0x80 {
		t.Errorf("p/b publish after p/a's deletion: PUBACK 0x%02x", code)
	}
}

// Rotating a secret refuses the old one at once: the open connection is
// closed, the old secret refused, the new one accepted.
func TestRotatedSecretReplacesTheOldAtOnce(t *testing.T) {
	e := newEnv(t)
	a := dev("p", "a")
	e.create(t, a)
	c := e.login(t, a, session{})
	ctx := testContext(t)
	if err := e.admin.RotateSecret(ctx, a, "new-secret"); err != nil {
		t.Fatal(err)
	}
	c.awaitClosed(t)
	if code, c := e.dial(t, a.Username(), "secret-a", session{}); c != nil {
		t.Errorf("old secret accepted (CONNACK 0x%02x)", code)
	}
	c = e.mustDial(t, a.Username(), "new-secret", session{})
	if code := c.publish(t, "otter/v1/p/a/inform", "{}"); code >= 0x80 {
		t.Errorf("publish with the new secret: PUBACK 0x%02x", code)
	}
}

// Rotating the secret of a device without an account creates it (and
// the shared role, when it is missing); creating an existing device sets
// its secret. Neither leaves anything for Sync to repair.
func TestCreateAndRotateAreIdempotent(t *testing.T) {
	e := newEnv(t)
	a, b := dev("p", "a"), dev("p", "b")
	ctx := testContext(t)
	if err := e.admin.run(ctx, []command{{Command: "deleteRole", Rolename: DeviceRole}}); err != nil {
		t.Fatal(err)
	}
	if err := e.admin.RotateSecret(ctx, a, "secret-a"); err != nil {
		t.Fatal(err)
	}
	e.login(t, a, session{})
	e.create(t, b)
	if err := e.admin.CreateDevice(ctx, b, "second"); err != nil {
		t.Fatal(err)
	}
	if code, c := e.dial(t, b.Username(), "secret-b", session{}); c != nil {
		t.Errorf("first secret still accepted (CONNACK 0x%02x)", code)
	}
	e.mustDial(t, b.Username(), "second", session{})
	rep, err := e.admin.Sync(ctx, []brokeradmin.Want{{Device: a}, {Device: b}})
	if err != nil || rep.Changed() {
		t.Errorf("Sync = %+v, %v; want no change", rep, err)
	}
}
