package cli

import (
	"path/filepath"
	"testing"
)

// TestSimulatorSecretsStayOutOfTheCurrentFolder: device secrets go to the
// user's state folder, one file per server and product.
func TestSimulatorSecretsStayOutOfTheCurrentFolder(t *testing.T) {
	state := t.TempDir()
	env := map[string]string{"XDG_STATE_HOME": state, "OTTER_SERVER": "http://127.0.0.1:18083"}
	a := newApp(Env{Getenv: func(k string) string { return env[k] }})
	got, err := a.defaultSecrets("demo")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(state, "otter", "sim", "127.0.0.1_18083", "demo.secrets.csv"); got != want {
		t.Errorf("secrets in %s, want %s", got, want)
	}
	delete(env, "XDG_STATE_HOME")
	t.Setenv("XDG_CONFIG_HOME", state)
	t.Setenv("HOME", state)
	if got, err := a.defaultSecrets("demo"); err != nil || !filepath.IsAbs(got) {
		t.Errorf("without XDG_STATE_HOME: %q %v, want a path in the configuration folder", got, err)
	}
}
