// Package mosquittotest runs a real Mosquitto 2 with the dynamic security
// plugin for tests (internal/mosquitto), killed when the test ends.
//
// Where Mosquitto is not installed the test is skipped, except under
// CI=true, where it fails: CI must run these tests.
package mosquittotest

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/otter-ota/otter/internal/mosquitto"
)

// Admin credentials of the plugin's admin client in every broker started
// here.
const (
	AdminUser     = mosquitto.AdminUser
	AdminPassword = mosquitto.AdminPassword
)

// Broker is a running Mosquitto.
type Broker struct {
	*mosquitto.Broker
}

// Start starts a broker whose dynamic security plugin has only the admin
// client (AdminUser, AdminPassword). Anonymous clients are refused.
func Start(t testing.TB) *Broker {
	t.Helper()
	return StartTLS(t, "", "")
}

// StartTLS starts a broker as Start does with, when certFile and keyFile
// are given, a second listener over TLS (TLSAddr) with that certificate
// and key. Both listeners take the same accounts.
func StartTLS(t testing.TB, certFile, keyFile string) *Broker {
	t.Helper()
	if _, _, _, err := mosquitto.Find(); err != nil {
		if os.Getenv("CI") == "true" || !errors.Is(err, mosquitto.ErrNotInstalled) {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	b, err := mosquitto.Start(t.TempDir(), mosquitto.Options{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.Kill()
		if t.Failed() {
			t.Log(logTail(b.Log()))
		}
	})
	return &Broker{b}
}

// logTail keeps a failed test's output readable: a broker logging every
// packet of 300 devices would bury the test's own message, so the whole
// log goes to a file that outlives the test and only its end is printed.
func logTail(log string) string {
	const keep = 40
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	where := "not saved"
	if f, err := os.CreateTemp("", "otter-test-mosquitto-*.log"); err == nil {
		_, werr := f.WriteString(log)
		if cerr := f.Close(); werr == nil && cerr == nil {
			where = f.Name()
		}
	}
	if len(lines) > keep {
		lines = lines[len(lines)-keep:]
	}
	return fmt.Sprintf("mosquitto log (whole: %s), its last %d lines:\n%s", where, len(lines), strings.Join(lines, "\n"))
}

// Restart kills the broker (SIGKILL: no goodbye to its clients) and starts
// it again on the same port with the same configuration; what the dynamic
// security plugin saved survives, sessions do not (persistence is off).
func (b *Broker) Restart(t testing.TB) {
	t.Helper()
	if err := b.Broker.Restart(); err != nil {
		t.Fatalf("restart mosquitto: %v", err)
	}
}

// Resume starts a killed broker again on the same port, as Restart does.
func (b *Broker) Resume(t testing.TB) {
	t.Helper()
	if err := b.Broker.Resume(); err != nil {
		t.Fatal(err)
	}
}
