package console

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/otter-ota/otter/client"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/internal/store/storetest"
)

func testKeys(t testing.TB) *sessionKeys {
	t.Helper()
	k, err := deriveKeys([]byte(strings.Repeat("k", 32)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSessionCookie(t *testing.T) {
	k := testKeys(t)
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	value, err := k.seal("otr_secret", now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	s, err := k.open(value, now)
	if err != nil || s.token != "otr_secret" {
		t.Fatalf("open: %+v %v", s, err)
	}
	other, _ := k.seal("otr_secret", now.Add(time.Hour))
	s2, _ := k.open(other, now)
	if string(s2.id) == string(s.id) {
		t.Errorf("two sign-ins share a session id")
	}
	otherKeys, _ := deriveKeys([]byte(strings.Repeat("x", 32)))
	flipped := []byte(value)
	flipped[len(flipped)/2] ^= 1
	bad := []struct {
		name  string
		keys  *sessionKeys
		value string
		at    time.Time
	}{
		{"expired", k, value, now.Add(time.Hour)},
		{"other key", otherKeys, value, now},
		{"tampered", k, string(flipped), now},
		{"truncated", k, value[:20], now},
		{"empty", k, "", now},
		{"not base64", k, "!!!", now},
		{"huge", k, strings.Repeat("A", 5000), now},
	}
	for _, b := range bad {
		if _, err := b.keys.open(b.value, b.at); !errors.Is(err, errNoSession) {
			t.Errorf("%s: open = %v, want errNoSession", b.name, err)
		}
	}
}

func FuzzSessionOpen(f *testing.F) {
	k := testKeys(f)
	good, _ := k.seal("otr_x", time.Unix(1<<40, 0))
	f.Add(good)
	f.Add("")
	f.Add("AAAA")
	f.Fuzz(func(t *testing.T, value string) {
		// Only "otr_x" was ever sealed under this key (seeds may come from
		// another process, with another nonce): anything else is a forgery.
		s, err := k.open(value, time.Unix(0, 0))
		if err == nil && s.token != "otr_x" {
			t.Fatalf("a forged cookie opened: %q -> %+v", value, s)
		}
	})
}

func TestParseTags(t *testing.T) {
	cases := []struct {
		in   string
		want map[string]string
		err  bool
	}{
		{"", nil, false},
		{"site=paris", map[string]string{"site": "paris"}, false},
		{"site=paris, ring=beta\nfloor=2", map[string]string{"site": "paris", "ring": "beta", "floor": "2"}, false},
		{"a=b=c", map[string]string{"a": "b=c"}, false},
		{"site=paris site=paris", map[string]string{"site": "paris"}, false},
		{"site", nil, true},
		{"=x", nil, true},
		{"site=a site=b", nil, true},
	}
	for _, c := range cases {
		got, err := parseTags(c.in)
		if (err != nil) != c.err || !c.err && !cmp.Equal(got, c.want) {
			t.Errorf("parseTags(%q) = %v, %v", c.in, got, err)
		}
	}
}

func FuzzParseTags(f *testing.F) {
	for _, s := range []string{"site=paris", "a=b, c=d", "=", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tags, err := parseTags(s)
		if err != nil {
			if ota.ErrorCode(err) != ota.EINVALID {
				t.Fatalf("error without a code: %v", err)
			}
			return
		}
		for k := range tags {
			if k == "" || strings.ContainsAny(k, ", \n=") {
				t.Fatalf("parseTags(%q) made tag name %q", s, k)
			}
		}
	})
}

func TestParseTaskForm(t *testing.T) {
	full := url.Values{
		"firmware": {"7"}, "name": {"n"}, "mode": {"request"}, "verification": {"on"},
		"target_all": {"on"}, "devices": {"a, b\nc"}, "tags": {"site=paris"}, "from_versions": {"1.0, 1.1"},
		"percent": {"5%"}, "dynamic": {"on"}, "skip_busy": {"on"},
		"start": {"2030-01-01T00:00"}, "end": {"2030-01-02T00:00:30"}, "tz": {"UTC"}, "window": {"22:00-04:00"},
		"rate": {"60"}, "rate_growth": {"1.5"}, "rate_growth_every": {"10"}, "max_concurrent": {"5"},
		"phases": {"1,10,100"}, "phase_success": {"95"}, "phase_gate": {"manual"},
		"retries": {"2"}, "retry_backoff": {"1m"}, "retry_on": {"download_failed timed_out"}, "timeout": {"90s"},
		"abort_failure": {"10"}, "abort_min": {"20"}, "confirm": {"both"},
	}
	f := newForm(full)
	spec := parseTaskForm(f)
	if !f.OK() {
		t.Fatalf("errors: %v %s", f.Errors, f.Error)
	}
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	end := time.Date(2030, 1, 2, 0, 0, 30, 0, time.UTC)
	want := ota.Policy{
		Start: &start, End: &end, Window: &ota.Window{Start: "22:00", End: "04:00", TZ: "UTC"},
		Rate: 60, RateGrowth: 1.5, RateGrowthEvery: 10, MaxConcurrent: 5,
		Phases: []float64{1, 10, 100}, PhaseSuccess: 95, PhaseGate: "manual",
		Retries: 2, RetryBackoff: ota.Duration(time.Minute), RetryOn: []string{"download_failed", "timed_out"},
		Timeout: ota.Duration(90 * time.Second), AbortFailure: 10, AbortMin: 20, Confirm: ota.ConfirmBoth,
	}
	if d := cmp.Diff(want, spec.Policy); d != "" {
		t.Errorf("policy (-want +got):\n%s", d)
	}
	wantTarget := ota.Target{All: true, Devices: []string{"a", "b", "c"}, Tags: map[string]string{"site": "paris"},
		FromVersions: []string{"1.0", "1.1"}, Percent: 5, Dynamic: true, SkipBusy: true}
	if d := cmp.Diff(wantTarget, spec.Target); d != "" {
		t.Errorf("target (-want +got):\n%s", d)
	}
	if spec.FirmwareID != 7 || spec.Mode != ota.ModeRequest || !spec.Verification || spec.Name != "n" {
		t.Errorf("spec: %+v", spec)
	}

	bad := map[string]string{
		"firmware": "x", "mode": "pull", "percent": "200", "rate": "-3", "rate_growth": "NaN",
		"start": "tomorrow", "timeout": "-5s", "phases": "10,5", "tags": "oops", "window": "9-5", "tz": "Nowhere/City",
	}
	v := url.Values{}
	for k, val := range bad {
		v.Set(k, val)
	}
	f = newForm(v)
	parseTaskForm(f)
	for field := range bad {
		if f.Errors[field] == "" {
			t.Errorf("%s=%q: no error next to the field", field, bad[field])
		}
	}
}

func FuzzParseTaskForm(f *testing.F) {
	f.Add("firmware=1&mode=push&target_all=on&phases=1%2C10%2C100&rate=5")
	f.Add("start=2030-01-01T00:00&tz=Europe%2FParis&window=01:00-05:00")
	f.Add("retry_backoff=1h&timeout=1s&percent=0.5")
	f.Fuzz(func(t *testing.T, query string) {
		v, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		f := newForm(v)
		spec := parseTaskForm(f)
		if !f.OK() {
			return
		}
		// A form without field errors gives numbers the policy can hold.
		p := spec.Policy
		if p.Rate < 0 || p.MaxConcurrent < 0 || p.Retries < 0 || p.AbortMin < 0 || spec.FirmwareID <= 0 {
			t.Fatalf("negative or missing values accepted: %+v", spec)
		}
		if spec.Target.Percent < 0 || spec.Target.Percent > 100 {
			t.Fatalf("percent %g accepted", spec.Target.Percent)
		}
	})
}

func TestFieldOf(t *testing.T) {
	cases := []struct {
		location, want string
	}{
		{"body.name", "name"},
		{"body.firmware_id", "firmware"},
		{"body.policy.rate", "rate"},
		{"body.policy.rate_growth_every", "rate_growth_every"},
		{"body.policy.phases[1]", "phases"},
		{"body.policy.window.start", "window"},
		{"body.target.all", "target_all"},
		{"body.target.devices[3]", "devices"},
		{"body.target.tags.site", "tags"},
		{"body.policy.no_such_field", ""},
		{"query.limit", ""},
		{"", ""},
	}
	for _, c := range cases {
		if got := fieldOf(c.location, taskFields); got != c.want {
			t.Errorf("fieldOf(%q) = %q, want %q", c.location, got, c.want)
		}
	}
}

// TestFailAt: an API problem's field errors go next to their fields, the
// rest (and any other error) next to the submit button, never placed by
// the words of a message.
func TestFailAt(t *testing.T) {
	f := newForm(nil)
	f.FailAt(&client.Error{Status: 400, Detail: "a; b; c", Errors: []client.FieldError{
		{Message: "rate must be positive", Location: "body.policy.rate"},
		{Message: "abort_min needs abort_failure", Location: "body.policy.abort_min"},
		{Message: "something about the whole body", Location: "body"},
	}}, taskFields)
	want := map[string]string{"rate": "Rate must be positive", "abort_min": "abort_min needs abort_failure"}
	if d := cmp.Diff(want, f.Errors); d != "" || f.Error != "Something about the whole body" {
		t.Errorf("field errors (-want +got):\n%s; form error %q", d, f.Error)
	}
	f = newForm(nil)
	f.FailAt(&client.Error{Status: 400, Detail: "invalid policy: rate must be positive", Details: []string{"rate must be positive"}}, taskFields)
	if len(f.Errors) != 0 || f.Error != "Invalid policy: rate must be positive" {
		t.Errorf("a problem without field errors: %v, form error %q", f.Errors, f.Error)
	}
	if got := messageOf(errors.New("SELECT secret FROM x")); got != "Internal error" {
		t.Errorf("an internal error leaks: %q", got)
	}
}

func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{
		"/tasks/1?state=failed": "/tasks/1?state=failed", "": "/", "//evil": "/", "/\\evil": "/",
		"https://evil": "/", "tasks": "/",
	} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestVersionCharts(t *testing.T) {
	counts := []store.VersionCount{
		{Product: "a", Module: "default", Version: "1.0.0", Devices: 10},
		{Product: "a", Module: "default", Version: "1.2.0", Devices: 30},
		{Product: "a", Module: "modem", Version: "7", Devices: 40},
	}
	for i := range 12 {
		counts = append(counts, store.VersionCount{Product: "b", Module: "default", Version: "2.0." + string(rune('a'+i)), Devices: 1})
	}
	charts := versionCharts(counts)
	if len(charts) != 3 {
		t.Fatalf("%d charts, want one per product and module", len(charts))
	}
	a := charts[0]
	if a.Total != 40 || a.Bars[0].Label != "1.2.0" || a.Bars[0].Width != 100 || a.Bars[1].Share != 25 {
		t.Errorf("chart a/default: %+v", a)
	}
	if !strings.Contains(a.Bars[0].Link, "version=1.2.0") || !strings.Contains(a.Bars[0].Link, "module=default") {
		t.Errorf("bar link %q", a.Bars[0].Link)
	}
	b := charts[2]
	if len(b.Bars) != maxBars+1 || b.Bars[maxBars].Label != "other" || b.Bars[maxBars].Count != 12-maxBars || b.Bars[maxBars].Link != "" {
		t.Errorf("chart b: %d bars, last %+v", len(b.Bars), b.Bars[len(b.Bars)-1])
	}
}

func TestTimelineFitsTheDuration(t *testing.T) {
	start := time.Date(2026, 1, 1, 10, 0, 30, 0, time.UTC)
	// A 15 s rollout from per-second points: one point a second, a curve.
	var secs []ota.TimelinePoint
	for i := range 15 {
		secs = append(secs, ota.TimelinePoint{Minute: start.Add(time.Duration(i) * time.Second), Started: 2, Succeeded: int64(min(i, 2))})
	}
	short := newTimeline(secs, start, start.Add(15*time.Second), time.Second)
	last := short.Points[len(short.Points)-1]
	if short.Step != time.Second || len(short.Points) != 16 || last.Started != 30 || last.Succeeded != 27 || last.InFlight != 3 {
		t.Fatalf("15 s rollout: step %s, %d points, last %+v", short.Step, len(short.Points), last)
	}
	if short.Points[4].Succeeded != 7 || short.Max != 27 || strings.Count(short.Succeeded, ",") != 17 {
		t.Errorf("15 s rollout: %+v", short)
	}
	// A 15 day rollout from per-minute points: bucketed to at most 200.
	var mins []ota.TimelinePoint
	for i := 0; i < 15*24*60; i += 7 {
		mins = append(mins, ota.TimelinePoint{Minute: start.Truncate(time.Minute).Add(time.Duration(i) * time.Minute), Started: 1, Succeeded: 1})
	}
	long := newTimeline(mins, start, start.Add(15*24*time.Hour), time.Minute)
	if long.Step != 2*time.Hour || len(long.Points) > maxPoints || len(long.Points) < 60 || long.StepText() != "2h" {
		t.Fatalf("15 day rollout: step %s (%s), %d points", long.Step, long.StepText(), len(long.Points))
	}
	if got := long.Points[len(long.Points)-1].Succeeded; got != int64(len(mins)) {
		t.Errorf("15 day rollout: %d succeeded at the end, want %d", got, len(mins))
	}
	for _, c := range []struct {
		d    time.Duration
		want time.Duration
	}{{time.Minute, time.Second}, {5 * time.Minute, 2 * time.Second}, {3 * time.Hour, time.Minute}, {2 * time.Hour, time.Minute}, {40 * 24 * time.Hour, 6 * time.Hour}} {
		res := time.Second
		if c.d >= 10*time.Minute {
			res = time.Minute
		}
		if got := chooseStep(start, start.Add(c.d), res); got != c.want {
			t.Errorf("a task of %s: step %s, want %s", c.d, got, c.want)
		}
	}
	if empty := newTimeline(nil, start, start, time.Second); len(empty.Points) != 1 || empty.Max != 0 {
		t.Errorf("empty timeline: %+v", empty)
	}
}

func TestProgressSegments(t *testing.T) {
	task := ota.Task{Total: 10, Counts: map[ota.JobState]int64{
		ota.JobSucceeded: 4, ota.JobFailed: 1, ota.JobTimedOut: 1, ota.JobDownloading: 2, ota.JobQueued: 2,
	}}
	segs := progress(task)
	want := map[string]float64{"succeeded": 40, "failed": 20, "rejected or cancelled": 0, "in flight": 20, "queued": 20}
	x := 0.0
	for _, s := range segs {
		if s.W != want[s.Label] || s.X != x {
			t.Errorf("segment %s: x %g width %g, want x %g width %g", s.Label, s.X, s.W, x, want[s.Label])
		}
		x += s.W
	}
}

func TestHumanNumbers(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1000: "-1,000"} {
		if got := humanCount(n); got != want {
			t.Errorf("humanCount(%d) = %q, want %q", n, got, want)
		}
	}
	for n, want := range map[int64]string{512: "512 B", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// slowStats counts its calls and answers when release says so.
type slowStats struct {
	mu      sync.Mutex
	calls   int
	release chan struct{}
}

func (s *slowStats) ProductStats(ctx context.Context) ([]store.ProductStats, error) {
	s.mu.Lock()
	s.calls++
	n := int64(s.calls)
	s.mu.Unlock()
	select {
	case <-s.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return []store.ProductStats{{Product: "p", Devices: n}}, nil
}

func (s *slowStats) VersionCounts(context.Context) ([]store.VersionCount, error) { return nil, nil }

func (s *slowStats) RecentFailures(context.Context, int) ([]ota.Event, error) { return nil, nil }

func TestStatsCacheRefreshesOnceInTheBackground(t *testing.T) {
	st := &slowStats{release: make(chan struct{})}
	clock := storetest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c := newStatsCache(st, 15*time.Second, clock.Now, slog.New(slog.DiscardHandler))
	c.grace = 10 * time.Millisecond
	ctx := context.Background()

	close(st.release) // the first snapshot comes at once
	f, err := c.get(ctx)
	if err != nil || f.Devices != 1 {
		t.Fatalf("first get: %+v %v", f, err)
	}
	st.release = make(chan struct{})
	clock.Add(time.Minute)
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			f, err := c.get(ctx)
			if err != nil || f.Devices != 1 {
				t.Errorf("a get during a slow refresh: %+v %v, want the previous snapshot", f, err)
			}
		})
	}
	wg.Wait() // none waited for the refresh beyond the grace
	close(st.release)
	eventuallyTrue(t, func() bool { f, _ := c.get(ctx); return f.Devices == 2 })
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.calls != 2 {
		t.Errorf("%d refreshes ran, want 1 for five concurrent requests", st.calls-1)
	}
}

func eventuallyTrue(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(time.Millisecond)
	}
}
