package api

import (
	"bytes"
	"testing"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/otter-ota/otter/internal/ota"
)

// wantJSON is what huma's own JSON format writes for v.
func wantJSON(t testing.TB, v any) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := huma.DefaultJSONFormat.Marshal(&buf, v); err != nil {
		t.Fatalf("encoding/json: %v", err)
	}
	return buf.Bytes()
}

// checkPageJSON fails unless jsonFormat writes v byte for byte as huma's
// JSON format does.
func checkPageJSON(t testing.TB, v any) {
	t.Helper()
	want := wantJSON(t, v)
	if _, ok := appendPageJSON(nil, v); !ok {
		t.Fatalf("%T was not encoded by hand", v)
	}
	var got bytes.Buffer
	if err := jsonFormat.Marshal(&got, v); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("page JSON differs from encoding/json's:\n got %s\nwant %s", got.Bytes(), want)
	}
}

func TestPageJSONMatchesEncodingJSON(t *testing.T) {
	at := time.Date(2026, 12, 1, 14, 3, 7, 120_000_000, time.UTC)
	zoned := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", -(3*3600+30*60)))
	whole := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	odd := "quote \" backslash \\ nl \n cr \r tab \t bs \b ff \f nul \x00 esc \x1b del \x7f <&> \u2028 \u2029 é 🦦 bad \xff\xfe end"
	tests := []struct {
		name string
		v    any
	}{
		{"jobs: nil items", Page[ota.Job]{}},
		{"jobs: empty", Page[ota.Job]{Items: []ota.Job{}}},
		{"jobs: minimal", Page[ota.Job]{Items: []ota.Job{{ID: 1, CreatedAt: at, UpdatedAt: at}}, Next: "1"}},
		{"jobs: every field", &Page[ota.Job]{Items: []ota.Job{
			{ID: 9, TaskID: 3, DeviceID: 77, Device: "d1", Product: "p", Module: "default", State: ota.JobFailed,
				Percent: 40, Attempt: 2, Code: "install_failed", Message: odd, Phase: 2, FromVersion: "1.0.0",
				Version: "2.0.0", CreatedAt: at, UpdatedAt: zoned, StartedAt: &whole, Deadline: &zoned,
				NextAttemptAt: &at, SentAt: &whole, Rev: 5},
			{ID: -1, State: ota.JobQueued, CreatedAt: whole, UpdatedAt: at},
		}, Next: odd}},
		{"devices", Page[ota.Device]{Items: []ota.Device{
			{ID: 1, Product: "p", Key: "d1", CreatedAt: at},
			{ID: 2, Product: "p", Key: odd, Tags: map[string]string{}, Versions: map[string]string{"default": "1.0.0"},
				Online: true, LastSeen: &zoned, CreatedAt: whole},
			{Tags: map[string]string{"site": "x", "ring": "2", "a": odd, odd: "b", "": ""},
				Versions: map[string]string{"m2": "2", "m1": "1"}, CreatedAt: at},
		}, Next: "42"}},
		{"events", &Page[ota.Event]{Items: []ota.Event{
			{ID: 1, At: at, Actor: "engine", Kind: ota.KindJob, Action: "queued"},
			{ID: 2, At: zoned, Actor: odd, Kind: "k", Action: "a", Product: "p", Device: "d", FirmwareID: 3, TaskID: 4,
				JobID: 5, Message: odd, Data: map[string]string{"state": "failed", "percent": "0", odd: odd}},
			{ID: 3, At: whole, Data: map[string]string{}},
		}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkPageJSON(t, tt.v) })
	}
}

// TestPageJSONFallsBack checks that values this file does not encode, and
// times encoding/json refuses, go to encoding/json.
func TestPageJSONFallsBack(t *testing.T) {
	if _, ok := appendPageJSON(nil, Page[ota.Task]{}); ok {
		t.Error("a page of tasks was encoded by hand")
	}
	far := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, ok := appendPageJSON(nil, Page[ota.Event]{Items: []ota.Event{{At: far}}}); ok {
		t.Error("a year past 9999 was encoded by hand")
	}
	var buf bytes.Buffer
	if err := jsonFormat.Marshal(&buf, Page[ota.Event]{Items: []ota.Event{{At: far}}}); err == nil {
		t.Error("no error for a year past 9999, as encoding/json gives")
	}
	v := map[string]int{"b": 2, "a": 1}
	buf.Reset()
	if err := jsonFormat.Marshal(&buf, v); err != nil || !bytes.Equal(buf.Bytes(), wantJSON(t, v)) {
		t.Errorf("map: %q, %v", buf.Bytes(), err)
	}
}

// FuzzPageJSON compares the hand-written encoding of jobs, devices and
// events with encoding/json's for any strings and times.
func FuzzPageJSON(f *testing.F) {
	f.Add("d1", "install failed: \"x\"\n", "1.0.0", "site", "é\xff\u2028", int64(1700000000), int64(123456789), 60)
	f.Add("", "", "", "", "", int64(0), int64(0), 0)
	f.Fuzz(func(t *testing.T, s1, s2, s3, k, v string, sec, nsec int64, offMin int) {
		at := time.Unix(sec%(1<<34), nsec%1e9).In(time.FixedZone("z", (offMin%(24*60))*60))
		utc := at.UTC()
		checkPageJSON(t, Page[ota.Job]{Items: []ota.Job{{ID: sec, TaskID: nsec, Device: s1, Product: s3, Module: k,
			State: ota.JobState(v), Percent: offMin, Attempt: int(nsec % 100), Code: s3, Message: s2, Phase: ota.PhaseIndex(offMin % 5),
			FromVersion: s3, Version: v, CreatedAt: at, UpdatedAt: utc, StartedAt: &at, SentAt: &utc}}, Next: s2})
		checkPageJSON(t, Page[ota.Device]{Items: []ota.Device{{Product: s1, Key: s2, Tags: map[string]string{k: v, s1: s2, s3: ""},
			Versions: map[string]string{k: s3}, Online: sec%2 == 0, LastSeen: &at, CreatedAt: utc}}, Next: s3})
		checkPageJSON(t, Page[ota.Event]{Items: []ota.Event{{ID: sec, At: at, Actor: s1, Kind: k, Action: v, Product: s3,
			Device: s1, FirmwareID: nsec, TaskID: sec, JobID: int64(offMin), Message: s2, Data: map[string]string{k: v, s2: s1}}}})
	})
}
