package cli_test

import (
	"bytes"
	"context"
	"maps"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/cli"
	"github.com/otter-ota/otter/internal/store/storetest"
	"github.com/otter-ota/otter/internal/testcert"
)

// lockedBuffer is a buffer that `otter serve`, running in a goroutine,
// writes while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serving is `otter serve` running in-process.
type serving struct {
	stdout, stderr *lockedBuffer
	done           chan int
	stop           context.CancelFunc
}

// serve runs `otter serve` with env until the test ends or stop is called.
func serve(t *testing.T, env map[string]string, args ...string) *serving {
	t.Helper()
	env = maps.Clone(env) // the test may change its map while this runs
	ctx, cancel := context.WithCancel(context.Background())
	s := &serving{stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, done: make(chan int, 1), stop: cancel}
	go func() {
		s.done <- cli.Execute(ctx, append([]string{"serve"}, args...), cli.Env{
			Stdout: s.stdout, Stderr: s.stderr, Getenv: func(k string) string { return env[k] },
		})
	}()
	t.Cleanup(func() { s.exit(t) })
	return s
}

// exit stops the server and returns its exit code.
func (s *serving) exit(t *testing.T) int {
	s.stop()
	return s.wait(t)
}

// wait returns the exit code of a server that stops on its own.
func (s *serving) wait(t *testing.T) int {
	select {
	case code := <-s.done:
		s.done <- code
		return code
	case <-time.After(30 * time.Second):
		t.Fatal("otter serve did not stop")
		return -1
	}
}

// ready waits until the server says it runs, or exits.
func (s *serving) ready(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(s.stdout.String(), "otter is running") {
		select {
		case code := <-s.done:
			s.done <- code
			t.Fatalf("otter serve exited with %d\nstdout:\n%s\nstderr:\n%s", code, s.stdout, s.stderr)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("otter serve did not start:\n%s\n%s", s.stdout, s.stderr)
		}
	}
}

var exportRE = regexp.MustCompile(`(?m)^\s*export (OTTER_\w+)=(\S+)$`)

// exports are the `export NAME=value` lines the server printed.
func (s *serving) exports() map[string]string {
	out := map[string]string{}
	for _, m := range exportRE.FindAllStringSubmatch(s.stdout.String(), -1) {
		out[m[1]] = m[2]
	}
	return out
}

// serveEnv is the environment of a server with its own data folder and
// database (PostgreSQL when the tests run on it), and the database's URL.
func serveEnv(t *testing.T) (map[string]string, string) {
	dir := t.TempDir()
	env := map[string]string{"OTTER_DATA": dir, "OTTER_HTTP": freeAddr(t)}
	db := storetest.URL(t)
	if strings.HasPrefix(db, "postgres") {
		env["OTTER_DB"] = db
	} else {
		db = "sqlite:" + filepath.Join(dir, "otter.db")
	}
	return env, db
}

// freeAddr returns a loopback address no one listens on (for a moment).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestFirstStartOnATakenPortCreatesNoToken is the README's first run with
// Mosquitto on the MQTT port: the failed start must create nothing, and the
// next start, with the port moved, prints everything the CLI needs.
func TestFirstStartOnATakenPortCreatesNoToken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	env, db := serveEnv(t)

	first := serve(t, env, "--mqtt", taken.Addr().String())
	if code := first.wait(t); code != cli.ExitError || !strings.Contains(first.stderr.String(), "--mqtt") {
		t.Fatalf("start on a taken port: exit %d\n%s", code, first.stderr)
	}
	if n, err := storetest.OpenURL(t, db).CountTokens(t.Context()); err != nil || n != 0 {
		t.Fatalf("a failed start left %d tokens (%v)", n, err)
	}

	second := serve(t, env, "--mqtt", "127.0.0.1:0")
	second.ready(t)
	exp := second.exports()
	if exp["OTTER_SERVER"] != "http://"+env["OTTER_HTTP"] || !strings.HasPrefix(exp["OTTER_TOKEN"], "otr_") {
		t.Fatalf("the second start printed %v:\n%s", exp, second.stdout)
	}
	// The walkthrough's first command works with exactly what was printed.
	o := &otter{t: t, url: exp["OTTER_SERVER"], token: exp["OTTER_TOKEN"]}
	o.ok("product", "create", "demo", "--name", "Demo board")
}

// TestTokenCreateOnTheDatabaseRecoversAdmin loses the admin token (the
// server prints it once), creates one on the stopped server's database,
// and uses it on the next start.
func TestTokenCreateOnTheDatabaseRecoversAdmin(t *testing.T) {
	env, _ := serveEnv(t)
	env["OTTER_MQTT"] = "127.0.0.1:0"
	first := serve(t, env)
	first.ready(t)
	first.exit(t) // the token it printed is lost

	flag := []string{"--data", env["OTTER_DATA"]}
	if env["OTTER_DB"] != "" {
		flag = []string{"--db", env["OTTER_DB"]}
	}
	o := &otter{t: t}
	o.fails(2, "--role is required", append([]string{"token", "create", "--name", "rescue"}, flag...)...)
	var tok struct {
		Token string `json:"token"`
		Role  string `json:"role"`
	}
	o.json(&tok, append([]string{"token", "create", "--role", "admin", "--name", "rescue"}, flag...)...)

	second := serve(t, env)
	second.ready(t)
	if !strings.Contains(second.stdout.String(), "No new admin token") {
		t.Errorf("a restart does not say how to recover a lost token:\n%s", second.stdout)
	}
	o = &otter{t: t, url: second.exports()["OTTER_SERVER"], token: tok.Token}
	o.ok("token", "create", "--role", "viewer", "--name", "dashboard")
	o.fails(1, "already", "token", "create", "--role", "viewer", "--name", "Dashboard")
	if out := o.ok("events", "--kind", "token"); !strings.Contains(out, "local") {
		t.Errorf("the recovery token's event does not name its actor:\n%s", out)
	}
}

// TestTokenCreateOnAMissingDataFolder refuses to make an empty database.
func TestTokenCreateOnAMissingDataFolder(t *testing.T) {
	o := &otter{t: t}
	o.fails(1, "holds no otter database", "token", "create", "--data", t.TempDir()+"/nosuch", "--role", "admin", "--name", "x")
}

// TestServeOverHTTPSPrintsAnHTTPSServer: with OTTER_TLS_CERT and
// OTTER_TLS_KEY the printed OTTER_SERVER is https, and a CLI that does not
// trust the certificate is told how to.
func TestServeOverHTTPSPrintsAnHTTPSServer(t *testing.T) {
	env, _ := serveEnv(t)
	env["OTTER_MQTT"] = "127.0.0.1:0"
	env["OTTER_TLS_CERT"], env["OTTER_TLS_KEY"], _ = testcert.Write(t, t.TempDir())
	s := serve(t, env)
	s.ready(t)
	exp := s.exports()
	if exp["OTTER_SERVER"] != "https://"+env["OTTER_HTTP"] {
		t.Fatalf("printed OTTER_SERVER=%s, want https://%s", exp["OTTER_SERVER"], env["OTTER_HTTP"])
	}
	o := &otter{t: t, url: exp["OTTER_SERVER"], token: exp["OTTER_TOKEN"]}
	o.fails(1, "set SSL_CERT_FILE", "product", "list")

	delete(env, "OTTER_TLS_KEY")
	r := serve(t, env)
	if code := r.wait(t); code != cli.ExitUsage || !strings.Contains(r.stderr.String(), "--tls-cert and --tls-key go together") {
		t.Errorf("a certificate without its key: exit %d\n%s", code, r.stderr)
	}
}
