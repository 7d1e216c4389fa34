package device

import (
	"context"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/otter-ota/otter/sdk/wire"
)

// TestTamperedCommandRefused changes, in transit, fields outside the
// firmware manifest: the command signature no longer verifies, so nothing
// is downloaded or installed.
func TestTamperedCommandRefused(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(wire.Upgrade) wire.Upgrade
	}{
		{"allow_downgrade added", func(up wire.Upgrade) wire.Upgrade { up.AllowDowngrade = true; return up }},
		{"confirm removed", func(up wire.Upgrade) wire.Upgrade { up.Confirm = false; return up }},
		{"params changed", func(up wire.Upgrade) wire.Upgrade { up.Params = map[string]string{"erase": "all"}; return up }},
		{"attempt changed", func(up wire.Upgrade) wire.Upgrade { up.Attempt = 5; return up }},
		{"no command signature", func(up wire.Upgrade) wire.Upgrade { up.CommandSignature = ""; return up }},
		{"signed for another device", func(up wire.Upgrade) wire.Upgrade {
			up.CommandSignature = up.Command(testProduct, "d2").Sign(testKey)
			return up
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newFakeServer(t)
			inst, rec, sl := newMemInstaller("2.0.0"), &recorder{}, &sleeps{}
			up := srv.firmware("7", "a.bin", "1.9.9", content(1000)) // an old, validly signed release
			up.Confirm = true
			srv.pushRaw(tt.tamper(signedCommand(up)))
			start(t, testConfig(t, srv, inst, rec, sl))
			waitFor(t, "the job fails", func() bool { return srv.lastState("7") == wire.StateFailed })
			if got := srv.progress("7")[0].Code; got != wire.FailSignature {
				t.Errorf("code = %s, want %s", got, wire.FailSignature)
			}
			if _, writes := inst.image(); len(srv.downloads()) != 0 || writes != 0 {
				t.Errorf("%d downloads, %d writes of a tampered command", len(srv.downloads()), writes)
			}
		})
	}
}

// runJob pushes up and waits until the job ends with event kind k.
func runJob(t *testing.T, srv *fakeServer, rec *recorder, up wire.Upgrade, k EventKind) {
	t.Helper()
	srv.push(up)
	waitFor(t, "job "+up.Job+" ends "+string(k), func() bool { return rec.has(k, up.Job) })
}

// TestReplayNeverReinstalls replays a signed downgrade command after eight
// other jobs (the memory of finished jobs is gone by then) and sends the
// running release again under a new attempt: neither installs.
func TestReplayNeverReinstalls(t *testing.T) {
	srv := newFakeServer(t)
	inst, rec, sl := newMemInstaller("2.0.0"), &recorder{}, &sleeps{}
	cfg := testConfig(t, srv, inst, rec, sl)
	start(t, cfg)
	down := srv.firmware("1", "down.bin", "1.0.0", content(500))
	down.AllowDowngrade = true // a legitimate, signed downgrade
	down = signedCommand(down)
	runJob(t, srv, rec, down, EventSucceeded)
	for i := 2; i <= 9; i++ {
		runJob(t, srv, rec, srv.firmware(itoa(i), "f"+itoa(i)+".bin", "1."+itoa(i-1)+".0", content(300+i)), EventSucceeded)
	}
	_, writes := inst.image()

	srv.pushRaw(down) // the captured downgrade, byte for byte
	waitFor(t, "the replay is refused", func() bool { return rec.count(EventFailed) == 1 })
	if e := rec.find(EventFailed, "1"); e == nil || e.Code != wire.FailReplayRefused {
		t.Fatalf("replayed job 1: %+v, want failed %s", e, wire.FailReplayRefused)
	}

	again := srv.firmware("9", "f9.bin", "1.8.0", content(309))
	again.Attempt = 2 // the same release again, as a retry of the last job
	srv.push(again)
	waitFor(t, "the job ends as succeeded without installing", func() bool { return rec.count(EventSucceeded) == 10 })
	if _, w := inst.image(); w != writes {
		t.Errorf("installer wrote %d more times, want 0", w-writes)
	}
	if v, _ := inst.Versions(context.Background()); v["default"] != "1.8.0" {
		t.Errorf("device runs %s, want 1.8.0", v["default"])
	}
}

// TestFloorRefusesBelowHighestRun: a device that once ran 2.0.0 refuses
// 1.8.0 even after falling back to 1.5.0, across a restart, unless the
// signed command allows the downgrade.
func TestFloorRefusesBelowHighestRun(t *testing.T) {
	srv := newFakeServer(t)
	inst, rec, sl := newMemInstaller("2.0.0"), &recorder{}, &sleeps{}
	cfg := testConfig(t, srv, inst, rec, sl)
	_, stop := start(t, cfg)
	waitFor(t, "the client informs", func() bool { return rec.has(EventInformed, "") })
	stop()
	inst.setVersion("1.5.0") // e.g. the bootloader fell back to an old slot
	start(t, cfg)
	runJob(t, srv, rec, srv.firmware("7", "a.bin", "1.8.0", content(1000)), EventFailed)
	if got := rec.find(EventFailed, "7").Code; got != wire.FailDowngradeRefused {
		t.Errorf("code = %s, want %s", got, wire.FailDowngradeRefused)
	}
	allowed := srv.firmware("8", "a.bin", "1.8.0", content(1000))
	allowed.AllowDowngrade = true
	runJob(t, srv, rec, allowed, EventSucceeded)
}

// TestSlowRetrievalAborted trickles the firmware a byte at a time: each
// request is dropped for its rate, and the job fails at its overall
// deadline instead of downloading forever.
func TestSlowRetrievalAborted(t *testing.T) {
	srv := newFakeServer(t)
	inst, rec, sl := newMemInstaller("1.0.0"), &recorder{}, &sleeps{}
	srv.dlHook = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		w.Header().Set("Content-Length", "5000")
		for {
			if _, err := w.Write([]byte{0}); err != nil {
				return true
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return true
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	cfg := testConfig(t, srv, inst, rec, sl)
	cfg.StallTimeout, cfg.MinDownloadRate, cfg.DownloadGrace = 100*time.Millisecond, 100_000, 500*time.Millisecond
	start(t, cfg)
	began := time.Now()
	runJob(t, srv, rec, srv.firmware("7", "a.bin", "1.1.0", content(5000)), EventFailed)
	e := rec.find(EventFailed, "7")
	if e.Code != wire.FailDownload || !strings.Contains(e.Err.Error(), "did not finish by") {
		t.Errorf("failure = %s %v, want %s past the deadline", e.Code, e.Err, wire.FailDownload)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("the trickled download took %s to fail", took)
	}
	if r := rec.find(EventRetry, "7"); r == nil || !strings.Contains(r.Err.Error(), "minimum") {
		t.Errorf("no request was dropped for its rate: %+v", r)
	}
}

// TestConfirmInstall asks the device's hook between verification and
// installation: a decline ends the job with its reason and deletes the
// downloaded file; an accept installs.
func TestConfirmInstall(t *testing.T) {
	for _, accept := range []bool{false, true} {
		t.Run(map[bool]string{false: "decline", true: "accept"}[accept], func(t *testing.T) {
			srv := newFakeServer(t)
			inst, rec, sl := newMemInstaller("1.0.0"), &recorder{}, &sleeps{}
			cfg := testConfig(t, srv, inst, rec, sl)
			var partThere bool
			cfg.ConfirmInstall = func(_ context.Context, up wire.Upgrade) (bool, string) {
				_, err := os.Stat(cfg.StateFile + ".part")
				partThere = err == nil
				return accept, "battery at 12%"
			}
			start(t, cfg)
			up := srv.firmware("7", "a.bin", "1.1.0", content(4000))
			up.ConfirmInstall = true
			srv.push(up)
			waitFor(t, "the install confirmation is sent", func() bool { return len(srv.confirms()) == 1 })
			cf := srv.confirms()[0]
			if cf.Stage != wire.StageInstall || cf.Accept != accept || cf.Job != "7" {
				t.Fatalf("confirm = %+v", cf)
			}
			if !partThere || !slices.Contains(states(srv.progress("7")), wire.StateDownloaded) {
				t.Error("the hook ran before the file was downloaded and reported")
			}
			if accept {
				waitFor(t, "the upgrade succeeds", func() bool { return rec.has(EventSucceeded, "7") })
				return
			}
			if cf.Message != "battery at 12%" {
				t.Errorf("decline message %q", cf.Message)
			}
			waitFor(t, "the file is dropped", func() bool {
				_, err := os.Stat(cfg.StateFile + ".part")
				return os.IsNotExist(err)
			})
			if _, writes := inst.image(); writes != 0 || slices.Contains(states(srv.progress("7")), wire.StateInstalling) {
				t.Error("a declined upgrade was installed")
			}
		})
	}
}
