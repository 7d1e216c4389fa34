package cli

import (
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/otter-ota/otter/client"
)

func at(t time.Time) *time.Time { return &t }

// noFile is the keyReader of tests that give no --devices-file.
func noFile(name string) (io.ReadCloser, error) { return nil, os.ErrNotExist }

func TestTaskFlagsSpec(t *testing.T) {
	base := func() taskFlags { return taskFlags{firmware: 3, mode: "push", all: true} }
	tests := []struct {
		name  string
		edit  func(f *taskFlags)
		want  func(s *client.TaskCreate)
		error string // a usage error containing this; "" for success
	}{
		{"all defaults", func(*taskFlags) {}, func(*client.TaskCreate) {}, ""},
		{"target", func(f *taskFlags) {
			f.all = false
			f.devices, f.tags, f.fromVersions = []string{"d1", "d2"}, []string{"site=paris", "ring=beta"}, []string{"1.0.0"}
			f.percent, f.dynamic, f.skipBusy, f.mode, f.verify, f.name = "12.5%", true, true, "request", true, "canary"
		}, func(s *client.TaskCreate) {
			s.Target = client.Target{Devices: []string{"d1", "d2"}, Tags: map[string]string{"site": "paris", "ring": "beta"},
				FromVersions: []string{"1.0.0"}, Percent: 12.5, Dynamic: true, SkipBusy: true}
			s.Mode, s.Verification, s.Name = client.ModeRequest, true, "canary"
		}, ""},
		{"every policy flag", func(f *taskFlags) {
			f.start, f.end, f.window, f.tz = "+10m", "2026-03-17T12:00:00Z", "23:00-05:00", "Europe/Paris"
			f.rate, f.rateGrowth, f.rateGrowthEvery, f.maxConcurrent = 100, 2, 50, 500
			f.phases, f.phaseSuccess, f.phaseGate = "1%,10%,100%", "95%", "manual"
			f.retries, f.retryBackoff, f.retryOn, f.timeout = 3, "1m", []string{"download_failed"}, "30m"
			f.abortFailure, f.abortMin, f.confirm = "10", 20, "install"
		}, func(s *client.TaskCreate) {
			s.Policy = client.Policy{Start: at(testNow.Add(10 * time.Minute)), End: at(time.Date(2026, 3, 17, 12, 0, 0, 0, time.UTC)),
				Window: &client.Window{Start: "23:00", End: "05:00", TZ: "Europe/Paris"}, Rate: 100, RateGrowth: 2, RateGrowthEvery: 50,
				MaxConcurrent: 500, Phases: []float64{1, 10, 100}, PhaseSuccess: 95, PhaseGate: "manual", Retries: 3,
				RetryBackoff: client.Duration(time.Minute), RetryOn: []string{"download_failed"}, Timeout: client.Duration(30 * time.Minute),
				AbortFailure: 10, AbortMin: 20, Confirm: "install"}
		}, ""},
		{"start now", func(f *taskFlags) { f.start = "now" }, func(s *client.TaskCreate) { s.Policy.Start = at(testNow) }, ""},
		// Rules between fields are the server's (ota.TaskSpec.Validate):
		// the CLI parses and sends them as given.
		{"server rules", func(f *taskFlags) {
			f.end, f.retryBackoff, f.phaseGate, f.abortMin = "2026-01-01T00:00:00Z", "1m", "later", 5
		}, func(s *client.TaskCreate) {
			s.Policy = client.Policy{End: at(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), RetryBackoff: client.Duration(time.Minute),
				PhaseGate: "later", AbortMin: 5}
		}, ""},
		{"no firmware", func(f *taskFlags) { f.firmware = 0 }, nil, "--firmware is required"},
		{"devices twice", func(f *taskFlags) { f.devices, f.devicesFile = []string{"d1"}, "x.txt" }, nil, "cannot be combined"},
		{"bad tag", func(f *taskFlags) { f.tags = []string{"site"} }, nil, "want key=value"},
		{"bad percent", func(f *taskFlags) { f.percent = "150%" }, nil, "--percent"},
		{"bad mode", func(f *taskFlags) { f.mode = "pull" }, nil, "want push or request"},
		{"bad start", func(f *taskFlags) { f.start = "tomorrow" }, nil, "--start \"tomorrow\""},
		{"tz alone", func(f *taskFlags) { f.tz = "Europe/Paris" }, nil, "--tz needs --window"},
		{"bad window", func(f *taskFlags) { f.window = "1-5" }, nil, "--window"},
		{"bad zone", func(f *taskFlags) { f.window, f.tz = "01:00-05:00", "Mars/Olympus" }, nil, "unknown time zone"},
		{"bad phases", func(f *taskFlags) { f.phases = "10%,5%,100%" }, nil, "--phases"},
		{"phases not to 100", func(f *taskFlags) { f.phases = "10%,50%" }, nil, "must be 100%"},
		{"bad backoff", func(f *taskFlags) { f.retries, f.retryBackoff = 2, "soon" }, nil, "--retry-backoff \"soon\""},
		{"negative timeout", func(f *taskFlags) { f.timeout = "-1m" }, nil, "--timeout"},
		{"bad abort", func(f *taskFlags) { f.abortFailure = "lots" }, nil, "--abort-failure"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := base()
			tt.edit(&f)
			got, err := f.spec(testNow, noFile)
			if tt.error != "" {
				var ue *usageError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.error) {
					t.Fatalf("error = %v, want a usage error with %q", err, tt.error)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := client.TaskCreate{FirmwareID: 3, Mode: client.ModePush, Target: client.Target{All: true}}
			if tt.name == "target" {
				want.Target.All = false
			}
			tt.want(&want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("spec (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadKeys(t *testing.T) {
	tests := []struct {
		in    string
		want  []string
		error string
	}{
		{"d1\nd2\n", []string{"d1", "d2"}, ""},
		{"# fleet\n\n  d1 \r\nd2,site=paris,ring=beta\n", []string{"d1", "d2"}, ""},
		{"d1\nd2\nd1\n", nil, `line 3 repeats device "d1" of line 1`},
		{"# nothing\n\n", nil, "lists no device"},
	}
	for _, tt := range tests {
		got, err := readKeys(strings.NewReader(tt.in), "f.txt")
		if tt.error != "" {
			if err == nil || !strings.Contains(err.Error(), tt.error) {
				t.Errorf("readKeys(%q) error = %v, want %q", tt.in, err, tt.error)
			}
			continue
		}
		if err != nil || !cmp.Equal(got, tt.want) {
			t.Errorf("readKeys(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	f := taskFlags{firmware: 1, mode: "push", devicesFile: "keys.txt"}
	spec, err := f.spec(testNow, func(name string) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader("a\nb\n")), nil
	})
	if err != nil || !cmp.Equal(spec.Target.Devices, []string{"a", "b"}) {
		t.Errorf("--devices-file: %+v, %v", spec.Target, err)
	}
	if _, err := (&taskFlags{firmware: 1, mode: "push", devicesFile: "gone.txt"}).spec(testNow, noFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing --devices-file: %v", err)
	}
}

func TestParseWhen(t *testing.T) {
	tests := []struct {
		in   string
		want *time.Time
		ok   bool
	}{
		{"", nil, true},
		{"now", at(testNow), true},
		{"+10m", at(testNow.Add(10 * time.Minute)), true},
		{"+1h30m", at(testNow.Add(90 * time.Minute)), true},
		{"+2d", at(testNow.Add(48 * time.Hour)), true},
		{"+0s", at(testNow), true},
		{"2026-05-01T02:00:00+02:00", at(time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)), true},
		{"+-5m", nil, false},
		{"10m", nil, false}, // ambiguous: ago or from now?
		{"+", nil, false},
		{"2026-05-01", nil, false},
		{"tomorrow", nil, false},
	}
	for _, tt := range tests {
		got, err := parseWhen("--start", tt.in, testNow)
		if (err == nil) != tt.ok {
			t.Errorf("parseWhen(%q) error = %v, want ok %v", tt.in, err, tt.ok)
			continue
		}
		if tt.ok && !(got == nil && tt.want == nil || got != nil && tt.want != nil && got.Equal(*tt.want)) {
			t.Errorf("parseWhen(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func FuzzParseWhen(f *testing.F) {
	for _, s := range []string{"", "now", "+10m", "+7d", "+1h2m3s", "2026-05-01T02:00:00+02:00", "+99999999d", "+-1s", "+1e9h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseWhen("--start", s, testNow)
		if err != nil {
			var ue *usageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--start") {
				t.Fatalf("%q: error %v is not a usage error naming the flag", s, err)
			}
			return
		}
		switch {
		case s == "":
			if got != nil {
				t.Fatalf("empty input gave %v", got)
			}
		case strings.HasPrefix(s, "+"):
			if got.Before(testNow) || got.Sub(testNow) > maxAge {
				t.Fatalf("%q: %v is not a delay of 0 to %v from now", s, got, maxAge)
			}
		case s != "now":
			back, err := time.Parse(time.RFC3339, got.Format(time.RFC3339Nano))
			if err != nil || !back.Equal(*got) {
				t.Fatalf("%q: %v does not round-trip: %v %v", s, got, back, err)
			}
		}
	})
}
