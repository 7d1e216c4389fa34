package devicehttp_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/otter-ota/otter/internal/blob"
	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/deadline"
	"github.com/otter-ota/otter/internal/devicehttp"
	"github.com/otter-ota/otter/internal/engine"
	"github.com/otter-ota/otter/internal/engine/enginetest"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/internal/store/storetest"
	"github.com/otter-ota/otter/sdk/wire"
)

// fixture is a running engine and device HTTP server on a fresh store with
// product "demo", devices d1..d3 on version 1.0.0 with known secrets, and a
// firmware 1.1.0 whose file is in a real blob folder.
type fixture struct {
	t      testing.TB
	ctx    context.Context
	st     store.Store
	blobs  *blob.FS
	e      *engine.Engine
	signer *devicehttp.URLSigner
	h      *devicehttp.Handler
	reg    *prometheus.Registry
	// clock is the handler's and signer's clock; the engine keeps real time.
	clock *storetest.Clock
	url   string
	// dl is the base URL of downloads: url, or the download listener's
	// with the fastDownloads option.
	dl      string
	fw      ota.Firmware
	file    []byte
	pub     ed25519.PublicKey
	priv    ed25519.PrivateKey
	secrets map[string]string
	devs    map[string]ota.Device
	// stopEngine stops the engine (also done at cleanup); calls then time out.
	stopEngine func()
}

// eachListener runs a download test against the net/http listener
// (fast false) and against the download listener (fast true).
func eachListener(t *testing.T, test func(t *testing.T, fast bool)) {
	t.Run("http", func(t *testing.T) { test(t, false) })
	t.Run("download-http", func(t *testing.T) { test(t, true) })
}

// newFixture builds the fixture; edit adjusts the handler's Config.
func newFixture(t *testing.T, edit ...func(*devicehttp.Config)) *fixture {
	t.Helper()
	return newFixtureOn(t, false, edit...)
}

// newFixtureOn builds the fixture; with fast, downloads are served on a
// listener of their own with fasthttp (Handler.FastDownloads), as
// `otter serve --download-http` does, and download URLs lead there.
func newFixtureOn(t testing.TB, fast bool, edit ...func(*devicehttp.Config)) *fixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f := &fixture{t: t, ctx: ctx, st: storetest.Open(t), reg: prometheus.NewRegistry(), clock: &storetest.Clock{},
		secrets: map[string]string{}, devs: map[string]ota.Device{}}
	f.seed()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.url = "http://" + l.Addr().String()
	f.dl = f.url
	var dlLn net.Listener
	if fast {
		if dlLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		f.dl = "http://" + dlLn.Addr().String()
	}
	key, err := devicehttp.LoadKey(ctx, f.st)
	if err != nil {
		t.Fatal(err)
	}
	if f.signer, err = devicehttp.NewURLSigner(f.dl, key, time.Hour, f.clock.Now); err != nil {
		t.Fatal(err)
	}
	f.e, f.stopEngine = enginetest.Start(t, engine.Config{Store: f.st, URLs: f.signer, Commands: enginetest.CommandSigner{Key: f.priv}})
	cfg := devicehttp.Config{Store: f.st, Blobs: f.blobs, Devices: f.e, Signer: f.signer, Metrics: f.reg, Now: f.clock.Now}
	for _, e := range edit {
		e(&cfg)
	}
	if f.h, err = devicehttp.New(cfg); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(f.h.Routes())
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close) // runs before the engine stops
	if dlLn != nil {
		fs := &fasthttp.Server{Handler: f.h.FastDownloads(deadline.Timeouts{}), NoDefaultServerHeader: true, NoDefaultContentType: true}
		served := make(chan error, 1)
		go func() { served <- fs.Serve(devicehttp.FastListener(dlLn)) }()
		t.Cleanup(func() {
			_ = fs.Shutdown()
			<-served
		})
	}
	return f
}

// seed creates the product, the devices and the firmware.
func (f *fixture) seed() {
	f.t.Helper()
	if err := f.st.CreateProduct(f.ctx, &ota.Product{Key: "demo"}); err != nil {
		f.t.Fatal(err)
	}
	var nd []store.NewDevice
	for i := 1; i <= 3; i++ {
		key := fmt.Sprintf("d%d", i)
		secret, err := credential.NewDeviceSecret()
		if err != nil {
			f.t.Fatal(err)
		}
		f.secrets[key] = secret
		nd = append(nd, store.NewDevice{Product: "demo", Key: key, SecretHash: credential.Hash(secret),
			Versions: map[string]string{ota.DefaultModule: "1.0.0"}})
	}
	devs, err := f.st.CreateDevices(f.ctx, nd)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, d := range devs {
		f.devs[d.Key] = d
	}
	if f.blobs, err = blob.NewFS(f.t.TempDir()); err != nil {
		f.t.Fatal(err)
	}
	if f.pub, f.priv, err = ed25519.GenerateKey(nil); err != nil {
		f.t.Fatal(err)
	}
	f.file = randomBytes(f.t, 300_001) // odd size: ranges do not fall on buffer edges
	f.fw = f.firmware("demo", "1.1.0", f.file)
}

// firmware stores a signed firmware of product with content file; edit
// sets further fields.
func (f *fixture) firmware(product, version string, file []byte, edit ...func(*ota.Firmware)) ota.Firmware {
	f.t.Helper()
	sum := sha256.Sum256(file)
	fw := ota.Firmware{Product: product, Module: ota.DefaultModule, Version: version, Size: int64(len(file)),
		SHA256: hex.EncodeToString(sum[:]), BlobKey: "firmware/" + hex.EncodeToString(sum[:]) + "-" + version}
	for _, e := range edit {
		e(&fw)
	}
	fw.Signature = wire.Manifest{Product: product, Module: fw.Module, Version: version, Size: fw.Size, SHA256: fw.SHA256}.Sign(f.priv)
	w, err := f.blobs.Create(f.ctx, fw.BlobKey)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := w.Write(file); err != nil {
		f.t.Fatal(err)
	}
	if err := w.Commit(f.ctx); err != nil {
		f.t.Fatal(err)
	}
	if err := f.st.CreateFirmware(f.ctx, &fw); err != nil {
		f.t.Fatal(err)
	}
	return fw
}

func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// reply is a device API answer.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// call makes one device API call as device key (with its secret) and
// returns the answer.
func (f *fixture) call(method, path, key, body string) reply {
	f.t.Helper()
	return f.callAs(method, path, "demo/"+key, f.secrets[key], body)
}

func (f *fixture) callAs(method, path, user, secret, body string) reply {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(f.ctx, method, f.url+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, secret)
	}
	return f.do(req)
}

func (f *fixture) do(req *http.Request) reply {
	f.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

// send posts a message as device key and wants status want.
func (f *fixture) send(key string, m wire.Message, want int) reply {
	f.t.Helper()
	r := f.call(http.MethodPost, wire.HTTPPath(m.Kind()), key, string(wire.Encode(m)))
	if r.status != want {
		f.t.Fatalf("%s from %s: HTTP %d %s, want %d", m.Kind(), key, r.status, r.body, want)
	}
	return r
}

// wireReply decodes an error answer's body.
func (f *fixture) wireReply(r reply) wire.Reply {
	f.t.Helper()
	if ct := r.header.Get("Content-Type"); ct != wire.ContentType {
		f.t.Fatalf("answer Content-Type %q, want %q (body %s)", ct, wire.ContentType, r.body)
	}
	rep, err := wire.DecodeReply(r.body)
	if err != nil {
		f.t.Fatalf("answer is not a reply: %v: %s", err, r.body)
	}
	return rep
}

// get downloads rawURL with optional headers.
func (f *fixture) get(method, rawURL string, headers ...string) reply {
	f.t.Helper()
	req, err := http.NewRequestWithContext(f.ctx, method, rawURL, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return f.do(req)
}

func (f *fixture) task(mode ota.Mode, devices ...string) ota.Task {
	f.t.Helper()
	return f.createTask(ota.TaskSpec{FirmwareID: f.fw.ID, Mode: mode, Target: ota.Target{Devices: devices}})
}

func (f *fixture) createTask(spec ota.TaskSpec) ota.Task {
	f.t.Helper()
	task, err := f.e.CreateTask(f.ctx, spec)
	if err != nil {
		f.t.Fatalf("create task: %v", err)
	}
	return task
}

func (f *fixture) waitTask(id int64, state ota.TaskState) ota.Task {
	f.t.Helper()
	var task ota.Task
	eventually(f.t, func() bool {
		var err error
		if task, err = f.st.GetTask(f.ctx, id); err != nil {
			f.t.Fatal(err)
		}
		return task.State == state
	}, fmt.Sprintf("task %d to be %s", id, state))
	return task
}

// eventually polls cond until it holds or ten seconds pass.
func eventually(t testing.TB, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// counter reads one series of a metric from the fixture's registry.
func (f *fixture) counter(name string, labels ...string) float64 {
	f.t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
				}
				if !found {
					continue metric
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

// waitCounter waits for a metric to reach want: a handler counts after the
// last byte of a large body is sent, which the client may have read
// already.
func (f *fixture) waitCounter(want float64, name string, labels ...string) {
	f.t.Helper()
	var got float64
	deadline := time.Now().Add(5 * time.Second)
	for got = f.counter(name, labels...); got != want && time.Now().Before(deadline); got = f.counter(name, labels...) {
		time.Sleep(2 * time.Millisecond)
	}
	if got != want {
		f.t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

// equalBytes fails unless got equals want, without printing megabytes.
func equalBytes(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Fatalf("%s: got %d bytes, want %d bytes (equal prefix: %d)", what, len(got), len(want), commonPrefix(got, want))
	}
}

func commonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}
