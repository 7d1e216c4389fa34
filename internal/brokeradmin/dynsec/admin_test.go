package dynsec

import (
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"

	"github.com/otter-ota/otter/internal/brokeradmin/dynsec/mosquittotest"
)

// Dial fails at once, saying why, when the broker is unreachable, refuses
// the credentials, or the user may not use the control topic.
func TestDialReportsWhyItCannotAdminister(t *testing.T) {
	e := newEnv(t)
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	for _, tc := range []struct {
		name, user, password, want string
		url                        *url.URL
	}{
		{"unreachable", mosquittotest.AdminUser, mosquittotest.AdminPassword, "connection refused",
			&url.URL{Scheme: "mqtt", Host: closed.Addr().String()}},
		{"wrong password", mosquittotest.AdminUser, "wrong", "0x87", e.b.URL()},
		{"not an admin", serviceUser, servicePassword, "admin role", e.b.URL()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := Dial(testContext(t), Config{URL: tc.url, Username: tc.user, Password: tc.password})
			if err == nil {
				a.Close()
				t.Fatal("Dial succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.url.Host) {
				t.Errorf("Dial: %v; want an error naming %s and saying %q", err, tc.url.Host, tc.want)
			}
		})
	}
}

// A lost connection is re-established and the responses subscribed to
// again: commands work after it. A command caught by the loss fails with
// ErrConnectionLost at once rather than at its deadline, and may be
// repeated.
func TestAdminReconnects(t *testing.T) {
	e := newEnv(t)
	a := dev("p", "a")
	e.admin.cm.TerminateConnectionForTest()
	ctx := testContext(t)
	for {
		err := e.admin.CreateDevice(ctx, a, "secret-a")
		if err == nil {
			break
		}
		if !errors.Is(err, ErrConnectionLost) {
			t.Fatalf("CreateDevice after a lost connection: %v", err)
		}
	}
	e.login(t, a, session{})
}

// After the broker restarts, the admin connection comes back by itself and
// the accounts made before are still there (the plugin saved them).
func TestAdminSurvivesBrokerRestart(t *testing.T) {
	e := newEnv(t)
	a, b := dev("p", "a"), dev("p", "b")
	e.create(t, a)
	e.b.Restart(t)
	ctx := testContext(t)
	for {
		err := e.admin.CreateDevice(ctx, b, "secret-b")
		if err == nil {
			break
		}
		if !errors.Is(err, ErrConnectionLost) {
			t.Fatalf("CreateDevice after the restart: %v", err)
		}
	}
	e.login(t, a, session{})
	e.login(t, b, session{})
}
