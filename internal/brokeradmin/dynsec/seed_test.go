package dynsec

import (
	"encoding/base64"
	"path/filepath"
	"testing"

	"github.com/otter-ota/otter/internal/brokeradmin"
	"github.com/otter-ota/otter/internal/brokeradmin/dynsec/mosquittotest"
)

// The hashes are the plugin's own: each was read from the file Mosquitto
// 2.0.11 wrote after a createClient with that password.
func TestPasswordHashIsThePlugins(t *testing.T) {
	for _, tc := range []struct {
		password, salt, want string
		iterations           int
	}{
		{"pw1", "6LrAVvbuoC2ndEww", "XzSFxl0PHU6CjzFNSEVRQsIBdotR2Vb7iTWgw3st678YaBcDP2ezBUT6MBagKtXlVaZSFMX9SmPDLzWRfG6uUg==", 101},
		{"admin-secret", "NMWxFZ0Pw71MJSiD", "hdVrLI/OpVsPG2GiE1IvcJjadBbZeVC6xRl/EhP9BkKk77ZPkxNpIKOg++2RMFGqBUARI8/UqJsDD7TS93cMfQ==", 101},
	} {
		salt, err := base64.StdEncoding.DecodeString(tc.salt)
		if err != nil {
			t.Fatal(err)
		}
		got, err := passwordHash(tc.password, salt, tc.iterations)
		if err != nil || got != tc.want {
			t.Errorf("passwordHash(%q, %s) = %s, %v; want %s", tc.password, tc.salt, got, err, tc.want)
		}
	}
}

// Accounts written into the plugin's file before Mosquitto starts are the
// ones CreateDevice makes: Sync finds nothing to change, and a seeded
// device logs in with its secret and is confined exactly as a device
// created live.
func TestSeededAccountsAreLiveOnes(t *testing.T) {
	b := mosquittotest.Start(t)
	ctx := testContext(t)
	live, seeded, bare := dev("p", "live"), dev("p", "seeded"), dev("q", "bare")
	a, err := Dial(ctx, Config{URL: b.URL(), Username: mosquittotest.AdminUser, Password: mosquittotest.AdminPassword})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.CreateDevice(ctx, live, "secret-live"); err != nil {
		t.Fatal(err)
	}
	a.Close()

	b.Kill()
	file := filepath.Join(b.Dir, "dynsec.json")
	// bare has no secret, as Sync creates an account it does not know the
	// secret of; admin, otter's own user here, gets the service role.
	if err := SeedFile(file, []brokeradmin.Want{{Device: seeded, Secret: "secret-seeded"}, {Device: bare}}, mosquittotest.AdminUser); err != nil {
		t.Fatal(err)
	}
	b.Resume(t)

	a, err = Dial(ctx, Config{URL: b.URL(), Username: mosquittotest.AdminUser, Password: mosquittotest.AdminPassword})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	e := &env{b: b, admin: a}
	if has, err := a.hasRole(ctx, mosquittotest.AdminUser, ServiceRole); err != nil || !has {
		t.Fatalf("admin has the service role: %t, %v; want true", has, err)
	}
	rep, err := a.Sync(ctx, []brokeradmin.Want{{Device: live}, {Device: seeded}, {Device: bare}})
	if err != nil || rep.Changed() {
		t.Fatalf("Sync after seeding = %+v, %v; want nothing changed", rep, err)
	}
	if code, c := e.dial(t, seeded.Username(), "wrong", session{}); c != nil {
		t.Fatalf("seeded device logged in with a wrong secret (CONNACK 0x%02x)", code)
	}
	if code, c := e.dial(t, bare.Username(), "", session{}); c != nil {
		t.Fatalf("device seeded without a secret logged in (CONNACK 0x%02x)", code)
	}

	// Both devices try the same topics, each as its own tree; the
	// service (the admin, seeded with the service role) sees the uplinks.
	svc := e.mustDial(t, mosquittotest.AdminUser, mosquittotest.AdminPassword, session{})
	if code := svc.subscribe(t, "otter/v1/#"); code >= 0x80 {
		t.Fatalf("service subscription refused: 0x%02x", code)
	}
	down := e.mustDial(t, mosquittotest.AdminUser, mosquittotest.AdminPassword, session{}) // sends downlinks, receives nothing
	clients := map[brokeradmin.Device]*mqttClient{live: e.login(t, live, session{}), seeded: e.login(t, seeded, session{})}
	subscribe := []string{"upgrade", "reply", "+", "#", "inform"}
	uplinks := []string{"inform", "status"}
	for d, c := range clients {
		own, other := "otter/v1/"+d.Username()+"/", "otter/v1/q/bare/"
		for _, last := range subscribe {
			for _, filter := range []string{own + last, other + last} {
				code := c.subscribe(t, filter)
				if want := filter == own+last && last != "inform"; (code < 0x80) != want {
					t.Errorf("%s: subscribe %s: SUBACK 0x%02x; granted should be %t", d, filter, code, want)
				}
			}
		}
		for _, topic := range []string{other + "inform", "otter/v1/" + d.Username(), "$CONTROL/dynamic-security/v1"} {
			if code := c.publish(t, topic, "forged"); code != 0x87 {
				t.Errorf("%s: publish %s: PUBACK 0x%02x; want 0x87 (not authorized)", d, topic, code)
			}
		}
		for _, last := range uplinks {
			c.publish(t, own+last, "own")
			svc.expectFirst(t, own+last, "own")
		}
		// Subscribed to its own #, it receives its downlinks only, not
		// its own uplinks.
		if code := down.publish(t, own+"upgrade", "cmd"); code >= 0x80 {
			t.Fatalf("service publish refused: 0x%02x", code)
		}
		c.expectFirst(t, own+"upgrade", "cmd")
		svc.expectFirst(t, own+"upgrade", "cmd")
	}
}
