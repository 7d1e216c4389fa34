package devicehttp_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/devicehttp"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/sdk/wire"
)

const informBody = `{"modules":{"default":"1.0.0"}}`

func TestDeviceAPIRefusesBadCredentials(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name, user, secret string
	}{
		{"no credentials", "", ""},
		{"wrong secret", "demo/d1", f.secrets["d2"]},
		{"empty secret", "demo/d1", ""},
		{"unknown device", "demo/d99", f.secrets["d1"]},
		{"unknown product", "nope/d1", f.secrets["d1"]},
		{"user without product", "d1", f.secrets["d1"]},
		{"user with a bad key", "demo/d 1", f.secrets["d1"]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.callAs(http.MethodPost, wire.PathInform, tt.user, tt.secret, informBody)
			if r.status != http.StatusUnauthorized {
				t.Fatalf("HTTP %d %s, want 401", r.status, r.body)
			}
			if got := r.header.Get("WWW-Authenticate"); got != `Basic realm="otter"` {
				t.Fatalf("WWW-Authenticate %q", got)
			}
			if rep := f.wireReply(r); rep.Error != wire.CodeUnauthorized || rep.To != wire.KindInform || rep.Message == "" {
				t.Fatalf("reply %+v", rep)
			}
		})
	}
	f.send("d1", wire.Inform{Modules: map[string]string{"default": "1.0.0"}}, http.StatusNoContent)
	f.waitCounter(float64(len(tests)), "otter_device_http_requests_total", "kind", "inform", "status", "401")
}

func TestDeviceAPIRefusesBadMessages(t *testing.T) {
	f := newFixture(t)
	huge := `{"modules":{"default":"1.0.0"},"pad":"` + strings.Repeat("x", wire.MaxMessageSize) + `"}`
	tests := []struct {
		name       string
		method     string
		path       string
		body       string
		chunked    bool
		wantStatus int
		wantCode   string
	}{
		{"not JSON", http.MethodPost, wire.PathInform, `{"modules":`, false, 400, wire.CodeMalformed},
		{"not an object", http.MethodPost, wire.PathInform, `[1]`, false, 400, wire.CodeMalformed},
		{"empty body", http.MethodPost, wire.PathProgress, ``, false, 400, wire.CodeMalformed},
		{"breaks a rule", http.MethodPost, wire.PathInform, `{"modules":{}}`, false, 400, wire.CodeMalformed},
		{"wrong type", http.MethodPost, wire.PathRequest, `{"module":5}`, false, 400, wire.CodeMalformed},
		{"confirm without accept", http.MethodPost, wire.PathConfirm, `{"job":"1"}`, false, 400, wire.CodeMalformed},
		{"bad progress state", http.MethodPost, wire.PathProgress, `{"job":"1","state":"done"}`, false, 400, wire.CodeMalformed},
		{"too large", http.MethodPost, wire.PathInform, huge, false, 413, wire.CodeTooLarge},
		{"too large, chunked", http.MethodPost, wire.PathInform, huge, true, 413, wire.CodeTooLarge},
		{"unknown job", http.MethodPost, wire.PathProgress, `{"job":"999","state":"downloading","percent":5}`, false, 404, wire.CodeUnknownJob},
		{"job that is not a number", http.MethodPost, wire.PathConfirm, `{"job":"abc","accept":true}`, false, 404, wire.CodeUnknownJob},
		{"unknown path", http.MethodPost, wire.HTTPPrefix + "reboot", informBody, false, 404, wire.CodeUnknownTopic},
		{"another API version", http.MethodPost, "/device/v2/inform", informBody, false, 404, wire.CodeUnknownTopic},
		{"no API version", http.MethodGet, "/device/upgrade", ``, false, 404, wire.CodeUnknownTopic},
		{"GET an uplink", http.MethodGet, wire.PathInform, ``, false, 405, wire.CodeMethodNotAllowed},
		{"POST the poll", http.MethodPost, wire.PathUpgrade, informBody, false, 405, wire.CodeMethodNotAllowed},
		{"HEAD the poll", http.MethodHead, wire.PathUpgrade, ``, false, 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(tt.body)
			if tt.chunked {
				body = io.MultiReader(body) // hides the length: no Content-Length
			}
			req, err := http.NewRequestWithContext(f.ctx, tt.method, f.url+tt.path, body)
			if err != nil {
				t.Fatal(err)
			}
			req.SetBasicAuth("demo/d1", f.secrets["d1"])
			r := f.do(req)
			if r.status != tt.wantStatus {
				t.Fatalf("HTTP %d %s, want %d", r.status, r.body, tt.wantStatus)
			}
			if tt.wantCode == "" {
				return
			}
			rep := f.wireReply(r)
			if rep.Error != tt.wantCode || rep.Message == "" {
				t.Fatalf("reply %+v, want code %s with a message", rep, tt.wantCode)
			}
			// A refused body that names a job is answered about that job.
			wantJob := map[string]string{`{"job":"1"}`: "1", `{"job":"1","state":"done"}`: "1", `{"job":"abc","accept":true}`: "abc"}[tt.body]
			if strings.HasPrefix(tt.body, `{"job":"999"`) {
				wantJob = "999"
			}
			if rep.Job != wantJob {
				t.Fatalf("reply %+v names job %q, want %q", rep, rep.Job, wantJob)
			}
		})
	}
}

// A device that speaks only HTTP upgrades in request mode: it asks, is
// offered the firmware, confirms, downloads from the offered URL, reports
// each stage and informs its new version; the job succeeds.
func TestRequestModeUpgradeOverHTTP(t *testing.T) {
	f := newFixture(t)
	task := f.task(ota.ModeRequest, "d1")
	f.waitTask(task.ID, ota.TaskRunning)
	r := f.send("d2", wire.Request{Module: "default"}, http.StatusOK)
	if rep := f.wireReply(r); rep.Error != wire.CodeNoUpgrade || rep.To != wire.KindRequest {
		t.Fatalf("d2, not in the task, got %+v; want no_upgrade", rep)
	}
	var offer wire.Upgrade
	eventually(t, func() bool {
		r := f.send("d1", wire.Request{Module: "default", Version: "1.0.0"}, http.StatusOK)
		u, err := wire.DecodeUpgrade(r.body)
		offer = u
		return err == nil
	}, "an offer for d1")
	if offer.Mode != wire.ModeRequest || !offer.Confirm || offer.Version != "1.1.0" || offer.SHA256 != f.fw.SHA256 {
		t.Fatalf("offer %+v", offer)
	}
	if !offer.Manifest("demo").Verify(f.pub, offer.Signature) {
		t.Fatal("the offer's signature does not verify")
	}
	f.send("d1", wire.Confirm{Job: offer.Job, Attempt: offer.Attempt, Accept: true}, http.StatusNoContent)
	f.upgradeByHTTP("d1", offer)
	done := f.waitTask(task.ID, ota.TaskCompleted)
	if done.Counts[ota.JobSucceeded] != 1 || done.Total != 1 {
		t.Fatalf("task counts %v total %d, want 1 succeeded", done.Counts, done.Total)
	}
}

// upgradeByHTTP downloads the upgrade's file, checks it, and reports the
// stages of a successful upgrade, then the new version.
func (f *fixture) upgradeByHTTP(key string, u wire.Upgrade) {
	f.t.Helper()
	f.send(key, wire.Progress{Job: u.Job, Attempt: u.Attempt, State: wire.StateDownloading, Percent: 0}, http.StatusNoContent)
	dl := f.get(http.MethodGet, u.URL)
	if dl.status != http.StatusOK {
		f.t.Fatalf("download %s: HTTP %d %s", u.URL, dl.status, dl.body)
	}
	equalBytes(f.t, "downloaded file", dl.body, f.file)
	for _, s := range []wire.State{wire.StateDownloading, wire.StateDownloaded, wire.StateInstalling, wire.StateRebooting} {
		f.send(key, wire.Progress{Job: u.Job, Attempt: u.Attempt, State: s, Percent: 100}, http.StatusNoContent)
	}
	f.send(key, wire.Inform{Modules: map[string]string{"default": u.Version}}, http.StatusNoContent)
}

// A push task reaches an HTTP device through its poll; a poll before the
// device reports on the job returns the same job again (with the same URL:
// expiries are rounded), and after success nothing.
func TestPushModeUpgradeOverHTTPPoll(t *testing.T) {
	f := newFixture(t)
	if r := f.call(http.MethodGet, wire.PathUpgrade, "d1", ""); r.status != http.StatusNoContent {
		t.Fatalf("poll before any task: HTTP %d %s, want 204", r.status, r.body)
	}
	task := f.task(ota.ModePush, "d1")
	f.waitTask(task.ID, ota.TaskRunning)
	var u wire.Upgrade
	eventually(t, func() bool {
		r := f.call(http.MethodGet, wire.PathUpgrade, "d1", "")
		if r.status == http.StatusNoContent {
			return false
		}
		var err error
		if u, err = wire.DecodeUpgrade(r.body); r.status != http.StatusOK || err != nil {
			t.Fatalf("poll: HTTP %d %s (%v)", r.status, r.body, err)
		}
		return true
	}, "the push command in a poll")
	if u.Mode != wire.ModePush || u.Version != "1.1.0" {
		t.Fatalf("command %+v", u)
	}
	again := f.call(http.MethodGet, wire.PathUpgrade, "d1", "")
	if dup, err := wire.DecodeUpgrade(again.body); err != nil || dup.Job != u.Job || dup.Attempt != u.Attempt || dup.URL != u.URL {
		t.Fatalf("poll before a report: HTTP %d %s, want the same job", again.status, again.body)
	}
	f.upgradeByHTTP("d1", u)
	done := f.waitTask(task.ID, ota.TaskCompleted)
	if done.Counts[ota.JobSucceeded] != 1 {
		t.Fatalf("task counts %v, want 1 succeeded", done.Counts)
	}
	if r := f.call(http.MethodGet, wire.PathUpgrade, "d1", ""); r.status != http.StatusNoContent {
		t.Fatalf("poll after success: HTTP %d %s, want 204", r.status, r.body)
	}
	dev, err := f.st.GetDevice(f.ctx, "demo", "d1")
	if err != nil || dev.Versions["default"] != "1.1.0" {
		t.Fatalf("device %+v, %v: want version 1.1.0", dev, err)
	}
}

// With a limit of one, a request whose body is still arriving holds the
// slot and the next request is told to come back later.
func TestDeviceAPILimitsRequestsInFlight(t *testing.T) {
	f := newFixture(t, func(c *devicehttp.Config) { c.MaxInFlight = 1 })
	pr, pw := io.Pipe()
	req, err := http.NewRequestWithContext(f.ctx, http.MethodPost, f.url+wire.PathInform, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("demo/d1", f.secrets["d1"])
	slow := make(chan reply, 1)
	go func() { slow <- f.doAsync(req) }()
	if _, err := io.WriteString(pw, informBody[:10]); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return f.counter("otter_device_http_in_flight") == 1 }, "the slow request to hold the slot")
	r := f.call(http.MethodGet, wire.PathUpgrade, "d2", "")
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "5" {
		t.Fatalf("second request: HTTP %d Retry-After %q, want 429 and 5", r.status, r.header.Get("Retry-After"))
	}
	if rep := f.wireReply(r); rep.Error != wire.CodeUnavailable || rep.RetryAfter != 5 {
		t.Fatalf("reply %+v", rep)
	}
	if _, err := io.WriteString(pw, informBody[10:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if got := <-slow; got.status != http.StatusNoContent {
		t.Fatalf("slow request: HTTP %d %s", got.status, got.body)
	}
	if r := f.call(http.MethodGet, wire.PathUpgrade, "d2", ""); r.status != http.StatusNoContent {
		t.Fatalf("after the slot is free: HTTP %d %s", r.status, r.body)
	}
}

// doAsync is do for a goroutine: it reports failures instead of stopping
// the test from the wrong goroutine.
func (f *fixture) doAsync(req *http.Request) reply {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Error(err)
		return reply{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

// A body that does not arrive in time frees its slot with a 503: the
// device sends the message again.
func TestDeviceAPIBodyTimeout(t *testing.T) {
	f := newFixture(t, func(c *devicehttp.Config) { c.BodyTimeout = 100 * time.Millisecond })
	pr, pw := io.Pipe()
	defer pw.Close()
	req, err := http.NewRequestWithContext(f.ctx, http.MethodPost, f.url+wire.PathInform, pr)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("demo/d1", f.secrets["d1"])
	go func() { _, _ = io.WriteString(pw, informBody[:5]) }() // then nothing more
	r := f.doAsync(req)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Fatalf("HTTP %d %s, want 503 with Retry-After", r.status, r.body)
	}
}

// When the engine cannot take a message, the device hears 503 and
// Retry-After, never a success.
func TestDeviceAPIAnswers503WhenTheEngineFails(t *testing.T) {
	f := newFixture(t, func(c *devicehttp.Config) { c.CallTimeout = 200 * time.Millisecond })
	f.stopEngine()
	r := f.call(http.MethodPost, wire.PathInform, "d1", informBody)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "5" {
		t.Fatalf("HTTP %d %s, want 503 with Retry-After 5", r.status, r.body)
	}
	if rep := f.wireReply(r); rep.Error != wire.CodeUnavailable {
		t.Fatalf("reply %+v", rep)
	}
}

// A secret rotated behind the handler's back (another process) works
// within seconds, and then the old one no longer does; a polling device
// costs no read per request meanwhile.
func TestCredentialCacheFollowsRotation(t *testing.T) {
	f := newFixture(t, func(c *devicehttp.Config) { c.CredentialTTL = time.Hour })
	old := f.secrets["d1"]
	poll := func(secret string) int {
		return f.callAs(http.MethodGet, wire.PathUpgrade, "demo/d1", secret, "").status
	}
	for range 5 {
		if s := poll(old); s != http.StatusNoContent {
			t.Fatalf("poll: HTTP %d", s)
		}
	}
	if misses := f.counter("otter_device_credential_lookups_total", "result", "miss"); misses != 1 {
		t.Fatalf("5 polls read the store %v times, want 1", misses)
	}
	fresh, err := credential.NewDeviceSecret()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.SetDeviceSecret(f.ctx, "demo", "d1", credential.Hash(fresh), nil); err != nil {
		t.Fatal(err)
	}
	if s := poll(old); s != http.StatusNoContent {
		t.Fatalf("old secret within the TTL: HTTP %d, want 204 (cached)", s)
	}
	f.clock.Add(6 * time.Second)
	if s := poll(fresh); s != http.StatusNoContent {
		t.Fatalf("new secret after 6s: HTTP %d, want 204", s)
	}
	if s := poll(old); s != http.StatusUnauthorized {
		t.Fatalf("old secret once the new one is in: HTTP %d, want 401", s)
	}
}

// Cached credentials expire after the TTL, on the wall clock: a secret
// rotated behind the handler's back stops working even when the device
// keeps using the old one (which, matching the cache, never causes a
// re-read of its own).
func TestCredentialCacheExpires(t *testing.T) {
	f := newFixture(t, func(c *devicehttp.Config) { c.CredentialTTL = 300 * time.Millisecond })
	old := f.secrets["d1"]
	poll := func() int {
		return f.callAs(http.MethodGet, wire.PathUpgrade, "demo/d1", old, "").status
	}
	if s := poll(); s != http.StatusNoContent {
		t.Fatalf("poll: HTTP %d", s)
	}
	fresh, err := credential.NewDeviceSecret()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.SetDeviceSecret(f.ctx, "demo", "d1", credential.Hash(fresh), nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { return poll() == http.StatusUnauthorized }, "the old secret to be refused once its cache entry expires")
}

// The cache holds at most its configured number of devices, however many
// names are tried.
func TestCredentialCacheIsBounded(t *testing.T) {
	f := newFixture(t, func(c *devicehttp.Config) { c.CredentialCacheSize = 10 })
	for i := range 50 {
		f.callAs(http.MethodGet, wire.PathUpgrade, "demo/x"+strconv.Itoa(i), "secret", "")
	}
	// Each name was a miss; were the cache unbounded, the first names would
	// still be hits now.
	before := f.counter("otter_device_credential_lookups_total", "result", "miss")
	for i := range 50 {
		f.callAs(http.MethodGet, wire.PathUpgrade, "demo/x"+strconv.Itoa(i), "secret", "")
	}
	misses := f.counter("otter_device_credential_lookups_total", "result", "miss") - before
	if misses < 40 {
		t.Fatalf("second round: %v misses of 50; a cache of 10 must miss at least 40", misses)
	}
}

// A device that lost its state after its first report (power lost while
// downloading) gets its job again from a poll, with the same attempt, until
// the job ends; when the operator cancels the task, the poll answers the
// cancel, as docs/protocol.md says.
func TestPollAnswersTheActiveJobUntilItEndsThenItsCancel(t *testing.T) {
	f := newFixture(t)
	task := f.task(ota.ModePush, "d1")
	f.waitTask(task.ID, ota.TaskRunning)
	var u wire.Upgrade
	eventually(t, func() bool {
		r := f.call(http.MethodGet, wire.PathUpgrade, "d1", "")
		var err error
		u, err = wire.DecodeUpgrade(r.body)
		return r.status == http.StatusOK && err == nil
	}, "the push command in a poll")
	for _, p := range []wire.Progress{
		{Job: u.Job, Attempt: u.Attempt, State: wire.StateDownloading, Percent: 0},
		{Job: u.Job, Attempt: u.Attempt, State: wire.StateDownloading, Percent: 30},
	} {
		f.send("d1", p, http.StatusNoContent)
		r := f.call(http.MethodGet, wire.PathUpgrade, "d1", "")
		again, err := wire.DecodeUpgrade(r.body)
		if r.status != http.StatusOK || err != nil || again.Job != u.Job || again.Attempt != u.Attempt || again.Cancel {
			t.Fatalf("poll after progress %d%%: HTTP %d %s; want job %s attempt %d again", p.Percent, r.status, r.body, u.Job, u.Attempt)
		}
	}
	if _, err := f.e.Cancel(f.ctx, task.ID); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the cancel stays pending: an answer may be lost
		r := f.call(http.MethodGet, wire.PathUpgrade, "d1", "")
		c, err := wire.DecodeUpgrade(r.body)
		if r.status != http.StatusOK || err != nil || !c.Cancel || c.Job != u.Job || c.Attempt != u.Attempt {
			t.Fatalf("poll after the cancel: HTTP %d %s; want the cancel of job %s", r.status, r.body, u.Job)
		}
	}
	if r := f.call(http.MethodGet, wire.PathUpgrade, "d2", ""); r.status != http.StatusNoContent {
		t.Fatalf("d2, never in a task: HTTP %d %s, want 204", r.status, r.body)
	}
}

// A read through Sharing (the embedded broker's login) fills the device
// API's cache: the device's next request reads no store. A change made
// through CredentialsChanged still wins over what the login read.
func TestCredentialCacheSharesTheBrokersReads(t *testing.T) {
	f := newFixture(t, func(c *devicehttp.Config) { c.CredentialTTL = time.Hour })
	old := f.secrets["d1"]
	if _, err := f.h.Sharing(f.st).Credentials(f.ctx, "demo", "d1"); err != nil {
		t.Fatal(err)
	}
	if s := f.callAs(http.MethodGet, wire.PathUpgrade, "demo/d1", old, "").status; s != http.StatusNoContent {
		t.Fatalf("poll after the shared read: HTTP %d", s)
	}
	if misses := f.counter("otter_device_credential_lookups_total", "result", "miss"); misses != 0 {
		t.Fatalf("the poll after the shared read read the store %v times, want 0", misses)
	}
	fresh, err := credential.NewDeviceSecret()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.SetDeviceSecret(f.ctx, "demo", "d1", credential.Hash(fresh), nil); err != nil {
		t.Fatal(err)
	}
	f.h.CredentialsChanged("demo", "d1")
	if s := f.callAs(http.MethodGet, wire.PathUpgrade, "demo/d1", old, "").status; s != http.StatusUnauthorized {
		t.Fatalf("old secret after the change: HTTP %d, want 401", s)
	}
	if s := f.callAs(http.MethodGet, wire.PathUpgrade, "demo/d1", fresh, "").status; s != http.StatusNoContent {
		t.Fatalf("new secret after the change: HTTP %d, want 204", s)
	}
}
