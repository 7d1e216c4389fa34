package mosquitto_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/otter-ota/otter/internal/mosquitto"
)

func start(t *testing.T, opts mosquitto.Options) *mosquitto.Broker {
	t.Helper()
	if _, _, _, err := mosquitto.Find(); errors.Is(err, mosquitto.ErrNotInstalled) && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	b, err := mosquitto.Start(t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// The extra configuration lines reach mosquitto.conf, and a restarted
// broker is a new process on the same port.
func TestStartWithConfigAndRestart(t *testing.T) {
	b := start(t, mosquitto.Options{Quiet: true, Config: mosquitto.TunedForOtter})
	conf, err := os.ReadFile(filepath.Join(b.Dir, "mosquitto.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range append([]string{"plugin_opt_config_file", "allow_anonymous false"}, mosquitto.TunedForOtter...) {
		if !strings.Contains(string(conf), line) {
			t.Errorf("mosquitto.conf lacks %q:\n%s", line, conf)
		}
	}
	if got, want := b.AdminURL(), "mqtt://"+mosquitto.AdminUser+":"+mosquitto.AdminPassword+"@"+b.Addr; got != want {
		t.Errorf("AdminURL() = %q, want %q", got, want)
	}
	pid := b.PID()
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	if b.PID() == pid {
		t.Errorf("the restarted broker has the old process id %d", pid)
	}
	c, err := net.Dial("tcp", b.Addr)
	if err != nil {
		t.Fatalf("the restarted broker does not listen on %s: %v", b.Addr, err)
	}
	c.Close()
}
