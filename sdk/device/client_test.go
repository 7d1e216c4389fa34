package device

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/otter-ota/otter/sdk/wire"
)

func states(ps []wire.Progress) []wire.State {
	var s []wire.State
	for _, p := range ps {
		if len(s) == 0 || s[len(s)-1] != p.State {
			s = append(s, p.State)
		}
	}
	return s
}

func TestPushUpgradeOverHTTP(t *testing.T) {
	srv := newFakeServer(t)
	inst, rec, sl := newMemInstaller("1.0.0"), &recorder{}, &sleeps{}
	fw := content(100_000)
	srv.push(srv.firmware("7", "a.bin", "1.1.0", fw))
	start(t, testConfig(t, srv, inst, rec, sl))

	waitFor(t, "the upgrade succeeds", func() bool { return rec.has(EventSucceeded, "7") })
	if got, _ := inst.image(); !bytes.Equal(got, fw) {
		t.Fatalf("installed %d bytes, not the firmware", len(got))
	}
	want := []wire.State{wire.StateDownloading, wire.StateDownloaded, wire.StateInstalling, wire.StateRebooting}
	if got := states(srv.progress("7")); !slices.Equal(got, want) {
		t.Errorf("progress states = %v, want %v", got, want)
	}
	for _, p := range srv.progress("7") {
		if p.Attempt != 1 {
			t.Errorf("progress %+v does not echo attempt 1", p)
		}
	}
	if got := <-srv.informed; got["default"] != "1.0.0" {
		t.Errorf("first inform = %v, want default 1.0.0", got)
	}
	if got := <-srv.informed; got["default"] != "1.1.0" {
		t.Errorf("inform after the reboot = %v, want default 1.1.0", got)
	}
}

func TestProgressAtMostEveryTenPercent(t *testing.T) {
	srv := newFakeServer(t)
	inst, rec, sl := newMemInstaller("1.0.0"), &recorder{}, &sleeps{}
	srv.push(srv.firmware("7", "a.bin", "1.1.0", content(1<<20)))
	cfg := testConfig(t, srv, inst, rec, sl)
	cfg.ProgressEvery = -1 // every tens bracket, however fast
	start(t, cfg)
	waitFor(t, "the upgrade succeeds", func() bool { return rec.has(EventSucceeded, "7") })

	var pcts []int
	for _, p := range srv.progress("7") {
		if p.State == wire.StateDownloading {
			pcts = append(pcts, p.Percent)
		}
	}
	if len(pcts) < 2 || len(pcts) > 10 || pcts[0] != 0 {
		t.Fatalf("downloading percents = %v, want 0 then at most one per tenth", pcts)
	}
	for i := 1; i < len(pcts); i++ {
		if pcts[i]/10 <= pcts[i-1]/10 || pcts[i] >= 100 {
			t.Fatalf("downloading percents = %v: two in one tenth, or 100", pcts)
		}
	}
}

// A download done within ProgressEvery of its first report sends no
// other "downloading" report: "downloaded" follows the 0.
func TestProgressOnceForAFastDownload(t *testing.T) {
	srv := newFakeServer(t)
	inst, rec, sl := newMemInstaller("1.0.0"), &recorder{}, &sleeps{}
	srv.push(srv.firmware("7", "a.bin", "1.1.0", content(1<<20)))
	cfg := testConfig(t, srv, inst, rec, sl)
	cfg.ProgressEvery = time.Hour
	start(t, cfg)
	waitFor(t, "the upgrade succeeds", func() bool { return rec.has(EventSucceeded, "7") })
	var states []string
	for _, p := range srv.progress("7") {
		states = append(states, fmt.Sprintf("%s %d", p.State, p.Percent))
	}
	want := []string{"downloading 0", "downloaded 0", "installing 0", "rebooting 0"}
	if !slices.Equal(states, want) {
		t.Fatalf("reports = %q, want %q", states, want)
	}
}

func TestDownloadResumesAfterCut(t *testing.T) {
	srv := newFakeServer(t)
	inst, rec, sl := newMemInstaller("1.0.0"), &recorder{}, &sleeps{}
	fw := content(300_000)
	srv.dlHook = func(w http.ResponseWriter, r *http.Request, n int) bool {
		if n > 1 {
			return false
		}
		// Send the headers and a third of the file, then drop the connection.
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Content-Length", itoa(len(fw)))
		w.WriteHeader(http.StatusOK)
		w.Write(fw[:100_000])
		w.(http.Flusher).Flush()
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
		return true
	}
	srv.push(srv.firmware("7", "a.bin", "1.1.0", fw))
	start(t, testConfig(t, srv, inst, rec, sl))

	waitFor(t, "the upgrade succeeds", func() bool { return rec.has(EventSucceeded, "7") })
	if got, _ := inst.image(); !bytes.Equal(got, fw) {
		t.Fatal("the resumed download differs from the firmware")
	}
	dl := srv.downloads()
	if len(dl) != 2 {
		t.Fatalf("%d download requests, want 2", len(dl))
	}
	if got := dl[1].Get("Range"); got != "bytes=100000-" {
		t.Errorf("second request Range = %q, want bytes=100000-", got)
	}
	if got := dl[1].Get("If-Range"); got != `"v1"` {
		t.Errorf("second request If-Range = %q, want the first ETag", got)
	}
	if !rec.has(EventRetry, "7") {
		t.Error("no retry event for the cut download")
	}
}

func TestDownloadStartsOverWhenFileChanged(t *testing.T) {
	srv := newFakeServer(t)
	inst, rec, sl := newMemInstaller("1.0.0"), &recorder{}, &sleeps{}
	fw := content(50_000)
	srv.dlHook = func(w http.ResponseWriter, r *http.Request, n int) bool {
		if n > 1 {
			return false // ServeContent answers 200 (whole file): the ETag no longer matches
		}
		w.Header().Set("ETag", `"old"`)
		w.Header().Set("Content-Length", itoa(len(fw)))
		w.Write([]byte(strings.Repeat("x", 10_000)))
		w.(http.Flusher).Flush()
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
		return true
	}
	srv.push(srv.firmware("7", "a.bin", "1.1.0", fw))
	start(t, testConfig(t, srv, inst, rec, sl))
	waitFor(t, "the upgrade succeeds", func() bool { return rec.has(EventSucceeded, "7") })
	if got, _ := inst.image(); !bytes.Equal(got, fw) {
		t.Fatal("the image mixes the old partial file with the new one")
	}
}

func TestVerifyFailures(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(up wire.Upgrade) wire.Upgrade
		code   string
		fetch  bool // whether the file is downloaded before the failure
	}{
		{"hash mismatch", func(up wire.Upgrade) wire.Upgrade {
			up.SHA256 = strings.Repeat("0", 64)
			return signed(up) // a correctly signed manifest for other content
		}, wire.FailVerify, true},
		{"size mismatch", func(up wire.Upgrade) wire.Upgrade {
			up.Size--
			return signed(up)
		}, wire.FailVerify, true},
		{"bad signature", func(up wire.Upgrade) wire.Upgrade {
			up.Version = "1.1.1" // the signature covered 1.1.0
			return up
		}, wire.FailSignature, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t)
			inst, rec, sl := newMemInstaller("1.0.0"), &recorder{}, &sleeps{}
			srv.push(tt.tamper(srv.firmware("7", "a.bin", "1.1.0", content(5000))))
			cfg := testConfig(t, srv, inst, rec, sl)
			start(t, cfg)

			waitFor(t, "the job fails", func() bool { return srv.lastState("7") == wire.StateFailed })
			ps := srv.progress("7")
			if got := ps[len(ps)-1]; got.Code != tt.code || got.Message == "" {
				t.Errorf("failure report = %+v, want code %s and a message", got, tt.code)
			}
			if _, writes := inst.image(); writes != 0 {
				t.Error("the installer was called with an unverified image")
			}
			if got := len(srv.downloads()) > 0; got != tt.fetch {
				t.Errorf("downloaded = %v, want %v", got, tt.fetch)
			}
			if _, err := os.Stat(cfg.StateFile + ".part"); !os.IsNotExist(err) {
				t.Error("the partial download was left behind")
			}
		})
	}
}

func TestDowngrade(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run("allow="+map[bool]string{false: "false", true: "true"}[allow], func(t *testing.T) {
			srv := newFakeServer(t)
			inst, rec, sl := newMemInstaller("2.0.0"), &recorder{}, &sleeps{}
			up := srv.firmware("7", "a.bin", "1.9.9", content(1000))
			up.AllowDowngrade = allow
			srv.push(up)
			start(t, testConfig(t, srv, inst, rec, sl))
			if !allow {
				waitFor(t, "the job fails", func() bool { return srv.lastState("7") == wire.StateFailed })
				if got := srv.progress("7")[0].Code; got != wire.FailDowngradeRefused {
					t.Errorf("code = %s, want %s", got, wire.FailDowngradeRefused)
				}
				return
			}
			waitFor(t, "the downgrade succeeds", func() bool { return rec.has(EventSucceeded, "7") })
		})
	}
}

func TestRetryAfterIsHonoured(t *testing.T) {
	srv := newFakeServer(t)
	inst, rec, sl := newMemInstaller("1.0.0"), &recorder{}, &sleeps{}
	srv.busy[wire.PathInform] = 2
	n := 0
	srv.dlHook = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if n++; n > 3 {
			return false
		}
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
		return true
	}
	srv.push(srv.firmware("7", "a.bin", "1.1.0", content(1000)))
	start(t, testConfig(t, srv, inst, rec, sl))
	waitFor(t, "the upgrade succeeds", func() bool { return rec.has(EventSucceeded, "7") })

	var retries []time.Duration
	rec.mu.Lock()
	for _, e := range rec.events {
		if e.Kind == EventRetry {
			retries = append(retries, e.Delay)
		}
	}
	rec.mu.Unlock()
	if len(retries) != 5 { // 2 informs, 3 downloads
		t.Fatalf("%d retries, want 5: %v", len(retries), retries)
	}
	for _, d := range retries {
		if d < 7*time.Second || d > 8*time.Second {
			t.Errorf("waited %s after Retry-After: 7, want 7s plus at most a tenth", d)
		}
	}
	if got := len(sl.all()); got < 5 {
		t.Errorf("Sleep called %d times, want at least 5", got)
	}
}

func TestDownloadGivesUpOnExpiredURL(t *testing.T) {
	srv := newFakeServer(t)
	inst, rec, sl := newMemInstaller("1.0.0"), &recorder{}, &sleeps{}
	srv.dlHook = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		http.Error(w, "link expired", http.StatusGone)
		return true
	}
	srv.push(srv.firmware("7", "a.bin", "1.1.0", content(1000)))
	start(t, testConfig(t, srv, inst, rec, sl))
	waitFor(t, "the job fails", func() bool { return srv.lastState("7") == wire.StateFailed })
	ps := srv.progress("7")
	if got := ps[len(ps)-1]; got.Code != wire.FailDownload || !strings.Contains(got.Message, "410") {
		t.Errorf("failure = %+v, want download_failed naming HTTP 410", got)
	}
	if len(srv.downloads()) != 1 {
		t.Errorf("%d download tries for a permanent error, want 1", len(srv.downloads()))
	}
}

func TestDuplicateDeliveryStartsOnce(t *testing.T) {
	srv := newFakeServer(t)
	inst, rec, sl := newMemInstaller("1.0.0"), &recorder{}, &sleeps{}
	release := make(chan struct{})
	srv.dlHook = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		<-release // hold the download while the command arrives again
		return false
	}
	up := srv.firmware("7", "a.bin", "1.1.0", content(1000))
	c, _ := start(t, testConfig(t, srv, inst, rec, sl))
	waitFor(t, "the client runs", func() bool { return rec.has(EventInformed, "") })
	for range 3 {
		c.deliver(downlink{kind: wire.KindUpgrade, payload: wire.Encode(up)})
	}
	close(release)
	waitFor(t, "the upgrade succeeds", func() bool { return rec.has(EventSucceeded, "7") })
	c.deliver(downlink{kind: wire.KindUpgrade, payload: wire.Encode(up)}) // after the end, too
	waitFor(t, "the late copy is recognised", func() bool { return rec.count(EventDuplicate) == 3 })
	if got := rec.count(EventUpgrade); got != 1 {
		t.Errorf("%d upgrades started, want 1", got)
	}
	if _, writes := inst.image(); writes != 1 {
		t.Errorf("installer wrote %d times, want 1", writes)
	}

	retry := up
	retry.Attempt = 2 // the server retries the job: this one must run
	inst.setVersion("1.0.0")
	c.deliver(downlink{kind: wire.KindUpgrade, payload: wire.Encode(signedCommand(retry))})
	waitFor(t, "the retry runs", func() bool { return rec.count(EventSucceeded) == 2 })
}

func TestCancelStopsDownload(t *testing.T) {
	srv := newFakeServer(t)
	inst, rec, sl := newMemInstaller("1.0.0"), &recorder{}, &sleeps{}
	started := make(chan struct{})
	srv.dlHook = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		w.Header().Set("Content-Length", "1000")
		w.Write(make([]byte, 100))
		w.(http.Flusher).Flush()
		close(started)
		<-r.Context().Done() // hang until the client gives up
		return true
	}
	up := srv.firmware("7", "a.bin", "1.1.0", content(1000))
	c, _ := start(t, testConfig(t, srv, inst, rec, sl))
	waitFor(t, "the client runs", func() bool { return rec.has(EventInformed, "") })
	c.deliver(downlink{kind: wire.KindUpgrade, payload: wire.Encode(up)})
	<-started
	c.deliver(downlink{kind: wire.KindUpgrade, payload: wire.Encode(wire.CancelUpgrade("7", 1))})
	waitFor(t, "the job is cancelled", func() bool { return rec.has(EventCancelled, "7") })
	c.deliver(downlink{kind: wire.KindUpgrade, payload: wire.Encode(up)}) // a late copy
	waitFor(t, "the late copy is ignored", func() bool { return rec.has(EventDuplicate, "7") })
	if _, writes := inst.image(); writes != 0 {
		t.Error("a cancelled job reached the installer")
	}
	if _, err := os.Stat(c.cfg.StateFile + ".part"); !os.IsNotExist(err) {
		t.Errorf("partial download still there: %v", err)
	}
	if srv.lastState("7") == wire.StateFailed {
		t.Error("a cancelled job was reported as failed")
	}
}

func TestCancelBeforeCommand(t *testing.T) {
	srv := newFakeServer(t)
	inst, rec, sl := newMemInstaller("1.0.0"), &recorder{}, &sleeps{}
	up := srv.firmware("7", "a.bin", "1.1.0", content(1000))
	c, _ := start(t, testConfig(t, srv, inst, rec, sl))
	waitFor(t, "the client runs", func() bool { return rec.has(EventInformed, "") })
	// At least once, in any order: the cancel overtakes the command.
	c.deliver(downlink{kind: wire.KindUpgrade, payload: wire.Encode(wire.CancelUpgrade("7", 0))})
	c.deliver(downlink{kind: wire.KindUpgrade, payload: wire.Encode(up)})
	waitFor(t, "the command is recognised", func() bool { return rec.has(EventDuplicate, "7") })
	if rec.has(EventUpgrade, "7") || len(srv.downloads()) != 0 {
		t.Error("a cancelled job started")
	}
}

func TestRestartAfterRebootInforms(t *testing.T) {
	for _, rollback := range []bool{false, true} {
		t.Run(map[bool]string{false: "boots new", true: "rolls back"}[rollback], func(t *testing.T) {
			srv := newFakeServer(t)
			inst, rec, sl := newMemInstaller("1.0.0"), &recorder{}, &sleeps{}
			var died atomic.Bool
			inst.reboot = func(ctx context.Context, _ wire.Upgrade) error {
				died.Store(true) // a real device stops here: the test stops the client
				<-ctx.Done()
				return ctx.Err()
			}
			srv.push(srv.firmware("7", "a.bin", "1.1.0", content(2000)))
			cfg := testConfig(t, srv, inst, rec, sl)
			_, stop := start(t, cfg)
			waitFor(t, "the device reboots", died.Load)
			stop()
			if srv.lastState("7") != wire.StateRebooting {
				t.Fatalf("last state before the reboot = %s", srv.lastState("7"))
			}
			if !rollback {
				inst.boot()
			}
			<-srv.informed // the first run's

			start(t, cfg) // the device has restarted
			if got := <-srv.informed; (got["default"] == "1.1.0") == rollback {
				t.Errorf("inform after restart = %v", got)
			}
			if rollback {
				waitFor(t, "the rollback is reported", func() bool { return srv.lastState("7") == wire.StateFailed })
				ps := srv.progress("7")
				if ps[len(ps)-1].Code != wire.FailRolledBack {
					t.Errorf("failure code = %s, want %s", ps[len(ps)-1].Code, wire.FailRolledBack)
				}
				return
			}
			waitFor(t, "the success is seen", func() bool { return rec.has(EventSucceeded, "7") })
			st, err := loadState(cfg.StateFile)
			if err != nil || st.Job != nil || st.finished("7", 1) == nil {
				t.Errorf("state after success = %+v, %v; want no job and job 7 done", st, err)
			}
		})
	}
}

func TestRestartResumesDownload(t *testing.T) {
	srv := newFakeServer(t)
	inst, rec, sl := newMemInstaller("1.0.0"), &recorder{}, &sleeps{}
	fw := content(40_000)
	up := srv.firmware("7", "a.bin", "1.1.0", fw)
	cfg := testConfig(t, srv, inst, rec, sl)
	// What a client that died at 25% leaves behind.
	st := state{Format: 1, Job: &jobRecord{Upgrade: up, Phase: phaseDownloading, From: "1.0.0"}}
	if err := saveState(cfg.StateFile, st); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.StateFile+".part", fw[:10_000], 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, cfg)
	waitFor(t, "the upgrade succeeds", func() bool { return rec.has(EventSucceeded, "7") })
	if got := srv.downloads()[0].Get("Range"); got != "bytes=10000-" {
		t.Errorf("Range after restart = %q, want bytes=10000-", got)
	}
	if got := srv.progress("7")[0]; got.State != wire.StateDownloading || got.Percent != 25 {
		t.Errorf("first report after restart = %+v, want downloading 25", got)
	}
	if got, _ := inst.image(); !bytes.Equal(got, fw) {
		t.Error("the resumed image differs")
	}
}

func TestRequestMode(t *testing.T) {
	srv := newFakeServer(t)
	inst, rec, sl := newMemInstaller("1.0.0"), &recorder{}, &sleeps{}
	offer := srv.firmware("9", "b.bin", "1.2.0", content(3000))
	offer.Mode, offer.Confirm = wire.ModeRequest, false
	offer = signedCommand(offer)
	var asked atomic.Int32
	var accept atomic.Bool
	cfg := testConfig(t, srv, inst, rec, sl)
	cfg.Confirm = func(_ context.Context, up wire.Upgrade) bool {
		asked.Add(1)
		return accept.Load()
	}
	c, _ := start(t, cfg)
	waitFor(t, "the client runs", func() bool { return rec.has(EventInformed, "") })
	ctx := context.Background()

	if _, err := c.Request(ctx, "default"); !errors.Is(err, ErrNoUpgrade) {
		t.Fatalf("Request without an offer: %v, want ErrNoUpgrade", err)
	}
	srv.answer = func(r wire.Request) any {
		if r.Version != "1.0.0" {
			t.Errorf("request carries version %q, want 1.0.0", r.Version)
		}
		return offer
	}
	got, err := c.Request(ctx, "default")
	if err != nil || got.Job != "9" {
		t.Fatalf("Request = %+v, %v; want the offer", got, err)
	}
	waitFor(t, "the decline is sent", func() bool { return len(srv.confirms()) == 1 })
	if cf := srv.confirms()[0]; cf.Accept || cf.Job != "9" {
		t.Errorf("confirm = %+v, want a decline of job 9", cf)
	}

	offer.Job = "10"
	offer = signedCommand(offer)
	accept.Store(true)
	if _, err := c.Request(ctx, "default"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the accepted offer installs", func() bool { return rec.has(EventSucceeded, "10") })
	if cf := srv.confirms()[1]; !cf.Accept || cf.Job != "10" {
		t.Errorf("confirm = %+v, want an accept of job 10", cf)
	}
	if asked.Load() != 2 {
		t.Errorf("Confirm asked %d times, want 2", asked.Load())
	}
}

func TestPushWithConfirmation(t *testing.T) {
	srv := newFakeServer(t)
	inst, rec, sl := newMemInstaller("1.0.0"), &recorder{}, &sleeps{}
	up := srv.firmware("7", "a.bin", "1.1.0", content(1000))
	up.Confirm = true
	srv.push(up)
	cfg := testConfig(t, srv, inst, rec, sl)
	cfg.Confirm = func(context.Context, wire.Upgrade) bool { return false }
	start(t, cfg)
	waitFor(t, "the decline is sent", func() bool { return len(srv.confirms()) == 1 })
	if len(srv.downloads()) != 0 || srv.confirms()[0].Accept {
		t.Error("a declined upgrade was downloaded or accepted")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	srv := newFakeServer(t)
	good := testConfig(t, srv, newMemInstaller("1"), &recorder{}, &sleeps{})
	tests := map[string]func(*Config){
		"no product":       func(c *Config) { c.Product = "" },
		"bad device":       func(c *Config) { c.Device = "a/b" },
		"no secret":        func(c *Config) { c.Secret = "" },
		"short key":        func(c *Config) { c.PublicKey = c.PublicKey[:31] },
		"no installer":     func(c *Config) { c.Installer = nil },
		"no server":        func(c *Config) { c.HTTPBase = "" },
		"bad broker":       func(c *Config) { c.Broker = "http://x:1883" },
		"bad http base":    func(c *Config) { c.HTTPBase = "ftp://x" },
		"broker sans host": func(c *Config) { c.Broker = "tcp://" },
	}
	for name, mutate := range tests {
		cfg := good
		mutate(&cfg)
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New accepted the config", name)
		}
	}
	if _, err := New(good); err != nil {
		t.Errorf("New(good) = %v", err)
	}
}

func TestRunRefusesCorruptState(t *testing.T) {
	srv := newFakeServer(t)
	cfg := testConfig(t, srv, newMemInstaller("1"), &recorder{}, &sleeps{})
	os.WriteFile(cfg.StateFile, []byte("{not json"), 0o600)
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("Run with a corrupt state file = %v, want an error naming it corrupt", err)
	}
}

func TestHTTPUnauthorizedBacksOff(t *testing.T) {
	srv := newFakeServer(t)
	rec, sl := &recorder{}, &sleeps{}
	cfg := testConfig(t, srv, newMemInstaller("1"), rec, sl)
	cfg.Secret = "wrong"
	start(t, cfg)
	waitFor(t, "three retries", func() bool { return rec.count(EventRetry) >= 3 })
	d := sl.all()
	if d[1] <= d[0] || d[2] <= d[1] {
		t.Errorf("retry delays %v do not grow", d[:3])
	}
	var werr *wire.Error
	if e := rec.find(EventRetry, ""); !errors.As(e.Err, &werr) || werr.Code != wire.CodeUnauthorized {
		t.Errorf("retry error = %v, want the server's unauthorized reply", e.Err)
	}
}

// An inform retried after the server was busy says what the device runs
// at the retry: an upgrade may have finished in between, and the server
// cannot tell an old report from a new one.
func TestRetriedInformReportsTheVersionsAtTheRetry(t *testing.T) {
	srv := newFakeServer(t)
	inst, rec, sl := newMemInstaller("1.0.0"), &recorder{}, &sleeps{}
	srv.busy[wire.PathInform] = 1
	cfg := testConfig(t, srv, inst, rec, sl)
	cfg.Sleep = func(ctx context.Context, d time.Duration) error {
		inst.setVersion("1.1.0") // the version changes while the device waits to retry
		return sl.sleep(ctx, d)
	}
	start(t, cfg)
	select {
	case got := <-srv.informed:
		if got["default"] != "1.1.0" {
			t.Fatalf("the retried inform reported %v, want the version at the retry, 1.1.0", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no inform reached the server")
	}
}

// Two informs in flight at once, the reconnect's and the one after a
// reboot, reach the server in the order their versions were read: the
// second reads them only once the first is answered. The server holds the
// first (1.0.0) until the second arrives or a second passes; the second
// must come after it, with 1.1.0.
func TestInformsReachTheServerInTheOrderTheyReadTheVersions(t *testing.T) {
	srv := newFakeServer(t)
	inst, rec, sl := newMemInstaller("1.0.0"), &recorder{}, &sleeps{}
	held, second := make(chan struct{}), make(chan struct{})
	var once sync.Once
	srv.informGate = func(m map[string]string) {
		if m["default"] == "1.0.0" {
			close(held)
			select {
			case <-second:
			case <-time.After(time.Second):
			}
			return
		}
		once.Do(func() { close(second) })
	}
	c, _ := start(t, testConfig(t, srv, inst, rec, sl))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case <-held: // the reconnect's inform is at the server
	case <-ctx.Done():
		t.Fatal("the client's first inform never reached the server")
	}
	inst.setVersion("1.1.0")
	if err := c.Inform(ctx); err != nil {
		t.Fatal(err)
	}
	if got := srv.informs(); len(got) != 2 || got[0] != "1.0.0" || got[1] != "1.1.0" {
		t.Fatalf("the server recorded informs %v, want [1.0.0 1.1.0]", got)
	}
}
