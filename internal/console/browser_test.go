package console_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

// Browser tests drive Debian's chromium headless through chromedp. Under
// CI=true a missing browser fails the run; elsewhere the tests skip.

// browserPath finds chromium or Chrome.
func browserPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium found on PATH: install it with apt-get install -y chromium (CI=true requires the browser tests)")
	}
	t.Skip("no chromium found on PATH: install it with apt-get install -y chromium to run the browser tests")
	return ""
}

// newBrowser starts a headless browser that never reaches outside hosts,
// with a fresh profile, and returns a tab's context.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(browserPath(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter"),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start the browser: %v", err)
	}
	return ctx
}

// tab opens a tab with its own cookies (a separate browser context), for a
// second operator.
func tab(t *testing.T, browser context.Context) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	return ctx
}

func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitJS waits until a JavaScript expression is true in the page.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond),
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
		t.Fatalf("waiting for %s (%s): %v\npage:\n%s", what, expr, err, clipText(body))
	}
}

// setField replaces a field's value as typing would, firing its change
// event so that htmx refreshes the preview.
func setField(id, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(
		`(() => { const e = document.getElementById(%q); e.value = %q; e.dispatchEvent(new Event("change", {bubbles: true})); })()`, id, value))
}

func js[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

func (s *stack) browserSignin(t *testing.T, ctx context.Context, role ota.Role) {
	t.Helper()
	do(t, ctx, "sign in as "+string(role),
		chromedp.Navigate(s.srv.URL+"/"),
		chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), s.tokens[role]),
		chromedp.Click(chromedp.CSS(`form[action="/signin"] button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("fleet-size")),
	)
}

// watcher records every request a tab makes and everything the browser
// logs as an error (content security policy violations, script errors).
type watcher struct {
	mu       sync.Mutex
	requests []string
	errors   []string
}

func watch(t *testing.T, ctx context.Context) *watcher {
	t.Helper()
	w := &watcher{}
	requests := chromedp.Events(ctx, network.RequestWillBeSent)
	logs := chromedp.Events(ctx, cdplog.EntryAdded)
	go func() {
		for ev, err := range requests {
			if err != nil {
				return
			}
			w.mu.Lock()
			w.requests = append(w.requests, ev.Request.URL)
			w.mu.Unlock()
		}
	}()
	go func() {
		for ev, err := range logs {
			if err != nil {
				return
			}
			if e := ev.Entry; e.Level == cdplog.EntryLevelError {
				w.mu.Lock()
				w.errors = append(w.errors, string(e.Source)+": "+e.Text+" "+e.URL)
				w.mu.Unlock()
			}
		}
	}()
	return w
}

// check fails on any request to another host and any logged error.
func (w *watcher) check(t *testing.T, base string) {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.requests) == 0 {
		t.Error("no request was recorded: the watcher is broken")
	}
	for _, u := range w.requests {
		if !strings.HasPrefix(u, base+"/") && !strings.HasPrefix(u, "data:") {
			t.Errorf("the console asked another host: %s", u)
		}
	}
	for _, e := range w.errors {
		t.Errorf("the browser logged an error: %s", e)
	}
}

// journey is one browser session of the rollout test.
type journey struct {
	t     *testing.T
	s     *stack
	ctx   context.Context
	shots string // the screenshot folder
}

// TestBrowserRollout is the operator's whole journey in a real browser:
// sign in, upload a firmware (its progress bar reaches 100%), create a task
// on simulated devices with a live preview, pause and resume it, and watch
// it complete live while devices report, without reloading the page; then
// a viewer finds no action anywhere. Screenshots of the main pages go to
// the test's folder, and to docs/screenshots with OTTER_UPDATE_SCREENSHOTS=1.
func TestBrowserRollout(t *testing.T) {
	browser := newBrowser(t)
	s := newStack(t)
	s.fleet("thermostat", 6)
	s.fleet("doorbell", 3)
	s.connect("thermostat", "d1", "d2", "d3", "d4", "d5", "d6")
	j := &journey{t: t, s: s, ctx: tab(t, browser), shots: t.TempDir()}
	t.Logf("screenshots in %s", j.shots)
	w := watch(t, j.ctx)
	s.browserSignin(t, j.ctx, ota.RoleAdmin)
	j.uploadFirmware()
	j.createTask()
	j.pauseAndResume()
	j.watchItComplete()
	j.screenshots()
	w.check(t, s.srv.URL)
	viewer := tab(t, browser)
	s.browserSignin(t, viewer, ota.RoleViewer)
	viewerSeesNoActions(t, s, viewer)
}

func (j *journey) uploadFirmware() {
	t, ctx := j.t, j.ctx
	image := filepath.Join(t.TempDir(), "thermostat-1.1.0.bin")
	if err := os.WriteFile(image, bytes.Repeat([]byte("otter firmware "), 2<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "upload a firmware",
		chromedp.Navigate(j.s.srv.URL+"/firmware/upload?product=thermostat"),
		chromedp.WaitVisible(chromedp.ID("u-version")),
		chromedp.SendKeys(chromedp.ID("u-version"), "1.1.0"),
		chromedp.SendKeys(chromedp.ID("u-params"), "channel=stable"),
		chromedp.SendKeys(chromedp.ID("u-desc"), "Spring release: faster boot, new schedule screen"),
		chromedp.SetUploadFiles(chromedp.ID("u-file"), []string{image}),
		chromedp.Click(chromedp.ID("upload-button")),
	)
	waitJS(t, ctx, "the upload to finish", `document.getElementById("uploaded-link") !== null`)
	if sent := js[string](t, ctx, `document.getElementById("upload-progress").dataset.sent || ""`); sent != "100" {
		t.Errorf("the upload progress bar reached %q%%, want 100%%", sent)
	}
	if v := js[float64](t, ctx, `document.getElementById("upload-progress").value`); v != 100 {
		t.Errorf("the progress bar shows %g, want 100", v)
	}
	do(t, ctx, "open the firmware", chromedp.Click(chromedp.ID("uploaded-link")), chromedp.WaitVisible(chromedp.ID("signature-check")))
	if sig := js[string](t, ctx, `document.getElementById("signature-check").textContent`); !strings.HasPrefix(sig, "valid") {
		t.Errorf("the firmware's signature check says %q", sig)
	}
}

// createTask goes from the firmware to the task form, watches the preview
// and a policy error follow the fields, and creates the task.
func (j *journey) createTask() {
	t, ctx := j.t, j.ctx
	do(t, ctx, "open the task form",
		chromedp.Click(chromedp.CSS(`a[href^="/tasks/new"]`)),
		chromedp.WaitVisible(chromedp.ID("t-retries")),
	)
	waitJS(t, ctx, "the preview", `document.getElementById("preview-total") && document.getElementById("preview-total").textContent === "6"`)
	do(t, ctx, "fill the task form",
		chromedp.SendKeys(chromedp.ID("t-name"), "spring rollout"),
		setField("t-backoff", "1m"),
		chromedp.SendKeys(chromedp.ID("t-phases"), "50%, 100%"),
	)
	// A task-rule error shows next to the field the API's location names.
	waitJS(t, ctx, "the policy error next to the backoff",
		`document.getElementById("err-retry_backoff").textContent.includes("need retries")`)
	do(t, ctx, "clear the backoff", setField("t-backoff", ""))
	waitJS(t, ctx, "the preview per phase", `document.getElementById("err-retry_backoff").textContent === "" &&
		document.querySelector("#preview .error") === null && document.querySelectorAll("#preview ol.phases li").length === 2`)
	screenshot(t, ctx, j.shots, "task-new")
	do(t, ctx, "create the task", chromedp.Click(chromedp.ID("create-task")), chromedp.WaitVisible(chromedp.ID("live")))
	// Buttons clicked before htmx has started post as plain forms (which
	// works, but reloads the page): wait for it.
	waitJS(t, ctx, "htmx to start", htmxIdle)
	// From here on the page must never reload: a marker in the window
	// survives only if it does not.
	do(t, ctx, "mark the page", chromedp.Evaluate[chromedp.Void](`window.otterMarker = "still here"`))
}

// htmxIdle is true once the page has loaded, htmx runs, and no swap is
// under way: a button found then is one htmx handles.
const htmxIdle = `document.readyState === "complete" && window.htmx !== undefined &&
	!document.querySelector(".htmx-request, .htmx-swapping, .htmx-settling, .htmx-added")`

func (j *journey) pauseAndResume() {
	t, ctx := j.t, j.ctx
	do(t, ctx, "pause", chromedp.Click(chromedp.ID("btn-pause")), chromedp.WaitVisible(chromedp.ID("btn-resume")))
	waitJS(t, ctx, "the paused state", `document.getElementById("live").dataset.state === "paused" && `+htmxIdle)
	waitJS(t, ctx, "the focus on the outcome", `document.activeElement && document.activeElement.id === "action-notice"`)
	// The live part refreshes every 2 s: the outcome and the focus on it
	// outlast a refresh.
	do(t, ctx, "count the refreshes", chromedp.Evaluate[chromedp.Void](`window.otterRefreshes = 0;
		document.addEventListener("htmx:afterSettle", function (e) {
			if (e.detail.requestConfig && e.detail.requestConfig.verb === "get") { window.otterRefreshes++; }
		})`))
	waitJS(t, ctx, "a refresh of the live part", `window.otterRefreshes > 0 && `+htmxIdle)
	if id := js[string](t, ctx, `document.activeElement ? document.activeElement.id : ""`); id != "action-notice" {
		t.Errorf("after a refresh the focus is on %q, want the outcome (action-notice)", id)
	}
	do(t, ctx, "resume", chromedp.Click(chromedp.ID("btn-resume")), chromedp.WaitVisible(chromedp.ID("btn-pause")))
	waitJS(t, ctx, "the running state", `document.getElementById("live").dataset.state === "running" && `+htmxIdle)
	if m := js[string](t, ctx, `window.otterMarker || ""`); m != "still here" {
		t.Errorf("pause or resume reloaded the page")
	}
}

// watchItComplete drives the devices (d6 fails) while the open page
// follows them.
func (j *journey) watchItComplete() {
	t, ctx, s := j.t, j.ctx, j.s
	keys := []string{"d1", "d2", "d3", "d4", "d5", "d6"}
	s.upgradeEventually("thermostat", s.notifiedExcept(t, "thermostat", keys, "d6"))
	waitJS(t, ctx, "the first success on the open page", `document.getElementById("progress-text").textContent.startsWith("1 of 6")`)
	s.finishRollout(t, "thermostat", keys, "d6")
	waitJS(t, ctx, "the task to complete on the open page", `document.getElementById("live").dataset.state === "completed"`)
	if m := js[string](t, ctx, `window.otterMarker || ""`); m != "still here" {
		t.Errorf("the task page reloaded while the task ran")
	}
	if txt := js[string](t, ctx, `document.getElementById("progress-text").textContent`); !strings.HasPrefix(txt, "5 of 6 succeeded") {
		t.Errorf("the finished task says %q", txt)
	}
	if txt := js[string](t, ctx, `document.getElementById("failures").textContent`); !strings.Contains(txt, "download_failed") {
		t.Errorf("the failure codes table says %q", txt)
	}
	// A rollout of seconds is charted per second: a curve of several
	// points that rises to the 5 successes.
	pts := js[string](t, ctx, `document.querySelector("#live .timeline polyline.ok").getAttribute("points")`)
	if ys := strings.Fields(pts); len(ys) < 3 || !strings.HasSuffix(ys[0], ",160.0") || !strings.HasSuffix(ys[len(ys)-1], ",0.0") {
		t.Errorf("the progress chart's succeeded curve is %q: want several points rising from 0 to the top", pts)
	}
	if cap := js[string](t, ctx, `document.querySelector("#live .timeline figcaption").textContent`); !strings.Contains(cap, "one point every 1s") {
		t.Errorf("the chart of a short rollout says %q, want one point a second", cap)
	}
	screenshot(t, ctx, j.shots, "task")
}

// screenshots saves the main pages, with a second rollout under way, and
// the task page on a phone-sized screen.
func (j *journey) screenshots() {
	t, ctx, s := j.t, j.ctx, j.s
	s.secondRollout(t)
	s.clock.Add(20 * time.Second) // past the fleet counts' cache
	for _, p := range []struct{ name, path, wait string }{
		{"overview", "/", "fleet-size"},
		{"products", "/products", "main"},
		{"product", "/products/thermostat", "device-table"},
		{"device", "/products/thermostat/devices/d6", "device-online"},
		{"firmware-list", "/firmware", "firmware-table"},
		{"firmware", "/firmware/1", "signature-check"},
		{"tasks", "/tasks", "main"},
		{"task-running", "/tasks/2", "live"},
		{"events", "/events?product=thermostat&kind=task", "main"},
	} {
		do(t, ctx, "open "+p.path, chromedp.Navigate(s.srv.URL+p.path), chromedp.WaitVisible(chromedp.ID(p.wait)))
		screenshot(t, ctx, j.shots, p.name)
	}
	do(t, ctx, "a phone-sized screen", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile),
		chromedp.Navigate(s.srv.URL+"/tasks/1"), chromedp.WaitVisible(chromedp.ID("live")))
	if w := js[int](t, ctx, `document.documentElement.scrollWidth`); w > 390 {
		t.Errorf("on a phone the task page is %dpx wide: it scrolls sideways", w)
	}
	screenshot(t, ctx, j.shots, "task-phone")
}

func viewerSeesNoActions(t *testing.T, s *stack, viewer context.Context) {
	t.Helper()
	for _, path := range []string{"/", "/products/thermostat", "/products/thermostat/devices/d1", "/firmware", "/firmware/1", "/tasks", "/tasks/1"} {
		do(t, viewer, "viewer opens "+path, chromedp.Navigate(s.srv.URL+path), chromedp.WaitVisible(chromedp.ID("main")))
		n := js[int](t, viewer, `document.querySelectorAll('main form[method="post"], main button[id^="btn-"], a[href^="/firmware/upload"], a[href^="/tasks/new"], [hx-post]').length`)
		if n != 0 {
			t.Errorf("a viewer sees %d action elements on %s", n, path)
		}
	}
}

// notifiedExcept waits for a device other than skip whose job has been sent.
func (s *stack) notifiedExcept(t *testing.T, product string, keys []string, skip string) string {
	t.Helper()
	var found string
	eventually(t, "a notified device", func() bool {
		for _, k := range keys {
			if j := s.activeJob(t, product, k); k != skip && j != nil && j.State == ota.JobNotified {
				found = k
				return true
			}
		}
		return false
	})
	return found
}

// secondRollout starts a phased task on the thermostats and brings two of
// them through it, so that the screenshots show a rollout in progress.
func (s *stack) secondRollout(t *testing.T) {
	t.Helper()
	admin := s.signedIn(ota.RoleAdmin)
	id, err := strconv.ParseInt(s.firmwareFor(admin, "thermostat", "1.2.0", url.Values{"description": {"Autumn release"}}), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	spec := ota.TaskSpec{Name: "autumn canary", FirmwareID: id, Mode: ota.ModePush, Target: ota.Target{All: true},
		Policy: ota.Policy{Phases: []float64{50, 100}, PhaseGate: ota.GateManual, Retries: 2, RetryBackoff: ota.Duration(time.Minute)}}
	if _, err := s.eng.CreateTask(ota.WithActor(s.ctx, "admin-token"), spec); err != nil {
		t.Fatal(err)
	}
	s.upgradeEventually("thermostat", firstNotified(t, s, 2))
	s.upgradeEventually("thermostat", firstNotified(t, s, 2))
}

// activeJob returns the device's active job, or nil.
func (s *stack) activeJob(t *testing.T, product, key string) *ota.Job {
	t.Helper()
	jobs, err := s.st.ActiveJobs(s.ctx, []int64{s.devices[product+"/"+key].ID})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) == 0 {
		return nil
	}
	return &jobs[0]
}

// finishRollout upgrades every device that still has a job, in the order
// the engine sends them, and fails the one named failing.
func (s *stack) finishRollout(t *testing.T, product string, keys []string, failing string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		pending := 0
		for _, k := range keys {
			j := s.activeJob(t, product, k)
			if j == nil {
				continue
			}
			pending++
			if j.State != ota.JobNotified {
				continue
			}
			if k == failing {
				s.fail(product, k, "download_failed")
			} else {
				s.upgrade(product, k)
			}
		}
		if pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d devices still have jobs", pending)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// screenshot saves a full-page PNG in the test's folder, and in
// docs/screenshots when OTTER_UPDATE_SCREENSHOTS=1.
func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dirs := []string{dir}
	if os.Getenv("OTTER_UPDATE_SCREENSHOTS") == "1" {
		dirs = append(dirs, filepath.Join("..", "..", "docs", "screenshots"))
	}
	for _, dir := range dirs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBrowserSignoutEndsTheSession signs in, copies the session cookie out
// of the browser, signs out with the button, and finds the copy refused;
// the sign-in and the sign-out are events.
func TestBrowserSignoutEndsTheSession(t *testing.T) {
	browser := newBrowser(t)
	s := newStack(t)
	ctx := tab(t, browser)
	s.browserSignin(t, ctx, ota.RoleOperator)
	cookies, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{s.srv.URL + "/"}})
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, s.srv.URL+"/", nil)
	for _, c := range cookies.Cookies {
		req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	}
	if status := statusOf(t, req); status != http.StatusOK {
		t.Fatalf("the copied cookie answers %d before the sign-out", status)
	}
	do(t, ctx, "sign out",
		chromedp.Click(chromedp.CSS(`form[action="/signout"] button[type=submit]`)),
		chromedp.WaitVisible(chromedp.ID("token")),
	)
	if status := statusOf(t, req); status != http.StatusSeeOther {
		t.Errorf("the copied cookie answers %d after the sign-out, want a redirect to the sign-in", status)
	}
	events, _, err := s.st.ListEvents(s.ctx, store.EventFilter{Kind: ota.KindSession}, store.Page{})
	if err != nil || len(events) != 2 || events[0].Action != "signed-out" || events[1].Action != "signed-in" || events[0].Actor != "operator-token" {
		t.Errorf("session events %+v %v, want a sign-in and a sign-out by operator-token", events, err)
	}
}
