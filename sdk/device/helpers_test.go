package device

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/otter-ota/otter/sdk/wire"
)

const (
	testProduct = "thermo"
	testDevice  = "d1"
	testSecret  = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

// testKey is the server's signing key in these tests.
var testKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

// fakeServer implements the HTTP device API and firmware downloads the
// way otter does, recording everything a device sends. Its hooks make
// downloads fail in the ways a real network does.
type fakeServer struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	uplinks  []wire.Message
	pending  *wire.Upgrade                                            // answer to GET /upgrade until the device reports on it
	answer   func(wire.Request) any                                   // answer to POST /request
	busy     map[string]int                                           // path -> how many 503s to answer first
	files    map[string][]byte                                        // download name -> content
	dlHook   func(w http.ResponseWriter, r *http.Request, n int) bool // true: handled; n counts requests
	dlHeads  []http.Header                                            // request headers of every download
	informed chan map[string]string                                   // every inform's modules
	// informGate, when set, runs before an inform is recorded; it may
	// hold the request, as a slow server would.
	informGate func(modules map[string]string)
}

func newFakeServer(t *testing.T) *fakeServer {
	s := &fakeServer{t: t, busy: map[string]int{}, files: map[string][]byte{}, informed: make(chan map[string]string, 100)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+wire.HTTPPrefix+"{kind}", s.uplink)
	mux.HandleFunc("GET "+wire.PathUpgrade, s.poll)
	mux.HandleFunc("GET /fw/{name}", s.download)
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.srv.Close)
	return s
}

func (s *fakeServer) authorized(w http.ResponseWriter, r *http.Request) bool {
	u, p, ok := r.BasicAuth()
	if ok && u == wire.Username(testProduct, testDevice) && p == testSecret {
		return true
	}
	w.WriteHeader(http.StatusUnauthorized)
	w.Write(wire.Encode(wire.Reply{To: "inform", Error: wire.CodeUnauthorized, Message: "wrong credentials"}))
	return false
}

// takeBusy answers 503 Retry-After: 7 while the path has busy answers left.
func (s *fakeServer) takeBusy(w http.ResponseWriter, path string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.busy[path] == 0 {
		return false
	}
	s.busy[path]--
	w.Header().Set("Retry-After", "7")
	w.WriteHeader(http.StatusServiceUnavailable)
	return true
}

func (s *fakeServer) uplink(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r) || s.takeBusy(w, r.URL.Path) {
		return
	}
	kind := wire.Kind(r.PathValue("kind"))
	body, _ := io.ReadAll(r.Body)
	m, err := wire.Decode(kind, body)
	if err != nil || !kind.Uplink() {
		w.WriteHeader(http.StatusBadRequest)
		w.Write(wire.Encode(wire.ErrorReply(kind, err)))
		return
	}
	if i, ok := m.(wire.Inform); ok && s.informGate != nil {
		s.informGate(i.Modules)
	}
	s.mu.Lock()
	s.uplinks = append(s.uplinks, m)
	if p, ok := m.(wire.Progress); ok && s.pending != nil && s.pending.Job == p.Job {
		s.pending = nil // the device has it
	}
	if i, ok := m.(wire.Inform); ok && s.pending != nil && i.Modules[s.pending.Module] == s.pending.Version {
		s.pending = nil // the device runs it: the job succeeded
	}
	answer := s.answer
	s.mu.Unlock()
	switch m := m.(type) {
	case wire.Inform:
		select {
		case s.informed <- m.Modules:
		default: // nobody reads them; never block the device
		}
	case wire.Request:
		if answer != nil {
			json.NewEncoder(w).Encode(answer(m))
			return
		}
		json.NewEncoder(w).Encode(wire.Reply{To: wire.KindRequest, Module: m.Module, Error: wire.CodeNoUpgrade, Message: "nothing for you"})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *fakeServer) poll(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(w, r) || s.takeBusy(w, r.URL.Path) {
		return
	}
	s.mu.Lock()
	p := s.pending
	s.mu.Unlock()
	if p == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	w.Write(wire.Encode(*p))
}

func (s *fakeServer) download(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.dlHeads = append(s.dlHeads, r.Header.Clone())
	n, hook := len(s.dlHeads), s.dlHook
	content, ok := s.files[r.PathValue("name")]
	s.mu.Unlock()
	if hook != nil && hook(w, r, n) {
		return
	}
	if !ok {
		http.NotFound(w, r)
		return
	}
	sum := sha256.Sum256(content)
	w.Header().Set("ETag", `"`+hex.EncodeToString(sum[:8])+`"`)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(content))
}

// firmware publishes content under name and returns a signed push upgrade
// for it.
func (s *fakeServer) firmware(job, name, version string, content []byte) wire.Upgrade {
	s.mu.Lock()
	s.files[name] = content
	s.mu.Unlock()
	sum := sha256.Sum256(content)
	up := wire.Upgrade{Job: job, Attempt: 1, Module: "default", Version: version, Size: int64(len(content)),
		SHA256: hex.EncodeToString(sum[:]), URL: s.srv.URL + "/fw/" + name, Mode: wire.ModePush}
	return signed(up)
}

// signed signs up's manifest and its command for the test device.
func signed(up wire.Upgrade) wire.Upgrade {
	up.Signature = up.Manifest(testProduct).Sign(testKey)
	return signedCommand(up)
}

// signedCommand signs up's command as the server would after a test
// changed a field the command covers.
func signedCommand(up wire.Upgrade) wire.Upgrade {
	up.CommandSignature = up.Command(testProduct, testDevice).Sign(testKey)
	return up
}

// push makes up the pending command, its command signed afresh.
func (s *fakeServer) push(up wire.Upgrade) { s.pushRaw(signedCommand(up)) }

// pushRaw makes up the pending command exactly as given (tampered ones).
func (s *fakeServer) pushRaw(up wire.Upgrade) {
	s.mu.Lock()
	s.pending = &up
	s.mu.Unlock()
}

// progress returns the progress reports received for job.
func (s *fakeServer) progress(job string) []wire.Progress {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ps []wire.Progress
	for _, m := range s.uplinks {
		if p, ok := m.(wire.Progress); ok && p.Job == job {
			ps = append(ps, p)
		}
	}
	return ps
}

func (s *fakeServer) confirms() []wire.Confirm {
	s.mu.Lock()
	defer s.mu.Unlock()
	var cs []wire.Confirm
	for _, m := range s.uplinks {
		if c, ok := m.(wire.Confirm); ok {
			cs = append(cs, c)
		}
	}
	return cs
}

// informs returns the default module's version of every inform received,
// in order.
func (s *fakeServer) informs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var vs []string
	for _, m := range s.uplinks {
		if i, ok := m.(wire.Inform); ok {
			vs = append(vs, i.Modules["default"])
		}
	}
	return vs
}

func (s *fakeServer) downloads() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]http.Header(nil), s.dlHeads...)
}

// lastState returns the state of the last report on job, "" before any.
func (s *fakeServer) lastState(job string) wire.State {
	ps := s.progress(job)
	if len(ps) == 0 {
		return ""
	}
	return ps[len(ps)-1].State
}

// memInstaller is an A/B device in memory: Write fills the inactive slot,
// Activate selects it for the next boot, Reboot boots it.
type memInstaller struct {
	mu       sync.Mutex
	versions map[string]string
	slot     []byte
	next     string // version activated for the next boot
	writes   int
	// reboot, when set, replaces the simulated reboot (e.g. to "die").
	reboot func(ctx context.Context, up wire.Upgrade) error
}

func newMemInstaller(version string) *memInstaller {
	return &memInstaller{versions: map[string]string{"default": version}}
}

func (m *memInstaller) Versions(context.Context) (map[string]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := make(map[string]string, len(m.versions))
	for k, x := range m.versions {
		v[k] = x
	}
	return v, nil
}

func (m *memInstaller) Write(_ context.Context, up wire.Upgrade, image io.Reader) error {
	b, err := io.ReadAll(image)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.slot, m.writes = b, m.writes+1
	if int64(len(b)) != up.Size {
		return fmt.Errorf("got %d bytes, want %d", len(b), up.Size)
	}
	return err
}

func (m *memInstaller) Activate(_ context.Context, up wire.Upgrade) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.next = up.Version
	return nil
}

func (m *memInstaller) Reboot(ctx context.Context, up wire.Upgrade) error {
	if m.reboot != nil {
		return m.reboot(ctx, up)
	}
	m.boot()
	return nil
}

// boot starts the activated version, as the bootloader would.
func (m *memInstaller) boot() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.next != "" {
		m.versions["default"], m.next = m.next, ""
	}
}

func (m *memInstaller) setVersion(v string) {
	m.mu.Lock()
	m.versions["default"] = v
	m.mu.Unlock()
}

func (m *memInstaller) image() ([]byte, int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.slot, m.writes
}

// recorder collects a client's events.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) add(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) has(k EventKind, job string) bool { return r.find(k, job) != nil }

func (r *recorder) find(k EventKind, job string) *Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.events {
		if e := r.events[i]; e.Kind == k && (job == "" || e.Job == job) {
			return &e
		}
	}
	return nil
}

func (r *recorder) count(k EventKind) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Kind == k {
			n++
		}
	}
	return n
}

// sleeps records the delays a client asked for and returns at once, so
// that tests see the backoff without waiting for it.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.d = append(s.d, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// testConfig returns an HTTP-mode config for srv with a state file in a
// fresh folder; tests adjust it.
func testConfig(t *testing.T, srv *fakeServer, inst Installer, rec *recorder, sl *sleeps) Config {
	return Config{
		HTTPBase: srv.srv.URL, Product: testProduct, Device: testDevice, Secret: testSecret,
		PublicKey: testKey.Public().(ed25519.PublicKey), Installer: inst,
		StateFile: filepath.Join(t.TempDir(), "otter.state"), OnEvent: rec.add,
		PollInterval: 20 * time.Millisecond, Rand: func() float64 { return 0.5 }, Sleep: sl.sleep,
		HTTPClient: srv.srv.Client(),
	}
}

// start runs a client for cfg until the test ends or stop is called.
func start(t *testing.T, cfg Config) (c *Client, stop func()) {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != context.Canceled {
				t.Errorf("Run returned %v, want context.Canceled", err)
			}
		})
	}
	t.Cleanup(stop)
	return c, stop
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func content(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/256)
	}
	return b
}

func itoa(i int) string { return strconv.Itoa(i) }
