package ota

import (
	"strings"
	"testing"
	"time"
	_ "time/tzdata" // the window tests must not depend on the machine's zoneinfo
)

func mustLoad(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestParseWindow(t *testing.T) {
	tests := []struct {
		in, tz string
		want   Window
		msg    string
	}{
		{"01:00-05:00", "Europe/Paris", Window{Start: "01:00", End: "05:00", TZ: "Europe/Paris"}, ""},
		{" 22:30 - 04:00 ", "", Window{Start: "22:30", End: "04:00"}, ""},
		{"00:00-23:59", "UTC", Window{Start: "00:00", End: "23:59", TZ: "UTC"}, ""},
		{"01:00", "", Window{}, `window "01:00": use HH:MM-HH:MM`},
		{"1:00-05:00", "", Window{}, `window start "1:00" is not HH:MM`},
		{"01:00-24:00", "", Window{}, `window end "24:00" is not a time of day`},
		{"01:60-05:00", "", Window{}, "minutes to 59"},
		{"05:00-05:00", "", Window{}, "start and end are equal"},
		{"01:00-05:00", "Mars/Olympus", Window{}, `unknown time zone "Mars/Olympus"`},
		{"01:00-05:00", "Local", Window{}, `"Local" depends on the server`},
		{"01:00-05:00", "../../etc/passwd", Window{}, "unknown time zone"},
		{"01:00--05:00", "", Window{}, `window end "-05:00" is not HH:MM`},
	}
	for _, tt := range tests {
		got, err := ParseWindow(tt.in, tt.tz)
		if tt.msg == "" && (err != nil || got != tt.want) {
			t.Errorf("ParseWindow(%q, %q) = %+v, %v; want %+v", tt.in, tt.tz, got, err, tt.want)
		}
		if tt.msg != "" && (ErrorCode(err) != EINVALID || !strings.Contains(err.Error(), tt.msg)) {
			t.Errorf("ParseWindow(%q, %q) error = %v, want %q", tt.in, tt.tz, err, tt.msg)
		}
	}
}

func TestWindowContains(t *testing.T) {
	paris := mustLoad(t, "Europe/Paris")
	at := func(s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04", s, paris)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	day := Window{Start: "01:00", End: "05:00", TZ: "Europe/Paris"}
	night := Window{Start: "22:00", End: "02:00", TZ: "Europe/Paris"}
	tests := []struct {
		w    Window
		t    time.Time
		want bool
	}{
		{day, at("2025-06-01 00:59"), false},
		{day, at("2025-06-01 01:00"), true},
		{day, at("2025-06-01 04:59"), true},
		{day, at("2025-06-01 05:00"), false},
		{night, at("2025-06-01 21:59"), false},
		{night, at("2025-06-01 22:00"), true},
		{night, at("2025-06-01 23:59"), true},
		{night, at("2025-06-02 00:00"), true},
		{night, at("2025-06-02 01:59"), true},
		{night, at("2025-06-02 02:00"), false},
		{night, at("2025-06-02 12:00"), false},
	}
	for _, tt := range tests {
		if got := tt.w.Contains(tt.t, paris); got != tt.want {
			t.Errorf("%s Contains %s = %v, want %v", tt.w, tt.t, got, tt.want)
		}
	}
	// The wall clock decides, not UTC: 03:00 UTC is 05:00 in Paris in June.
	if day.Contains(time.Date(2025, 6, 1, 3, 0, 0, 0, time.UTC), paris) {
		t.Error("03:00 UTC (05:00 Paris) is inside 01:00-05:00 Paris")
	}
}

func TestWindowNextOpen(t *testing.T) {
	paris := mustLoad(t, "Europe/Paris")
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name     string
		w        Window
		loc      *time.Location
		from     string
		wantOpen string
	}{
		{"open now", Window{Start: "01:00", End: "05:00"}, time.UTC, "2025-06-01T02:00:00Z", "2025-06-01T02:00:00Z"},
		{"later today", Window{Start: "01:00", End: "05:00"}, time.UTC, "2025-06-01T00:30:15Z", "2025-06-01T01:00:00Z"},
		{"tomorrow", Window{Start: "01:00", End: "05:00"}, time.UTC, "2025-06-01T05:00:00Z", "2025-06-02T01:00:00Z"},
		{"crossing midnight", Window{Start: "22:00", End: "02:00"}, time.UTC, "2025-06-01T02:00:00Z", "2025-06-01T22:00:00Z"},
		{"paris summer", Window{Start: "01:00", End: "05:00"}, paris, "2025-06-01T12:00:00Z", "2025-06-01T23:00:00Z"},
		// 2025-03-30: Paris clocks jump from 02:00 CET to 03:00 CEST (01:00 UTC).
		{"spring forward, start skipped", Window{Start: "02:30", End: "04:00"}, paris, "2025-03-29T23:00:00Z", "2025-03-30T01:00:00Z"},
		{"spring forward, window skipped", Window{Start: "02:15", End: "02:45"}, paris, "2025-03-29T23:00:00Z", "2025-03-31T00:15:00Z"},
		{"spring forward, normal start", Window{Start: "04:00", End: "05:00"}, paris, "2025-03-29T23:00:00Z", "2025-03-30T02:00:00Z"},
		// 2025-10-26: Paris clocks fall back from 03:00 CEST to 02:00 CET (01:00 UTC).
		{"fall back, first 02:30", Window{Start: "02:30", End: "02:45"}, paris, "2025-10-25T22:00:00Z", "2025-10-26T00:30:00Z"},
		{"fall back, second 02:30", Window{Start: "02:30", End: "02:45"}, paris, "2025-10-26T00:50:00Z", "2025-10-26T01:30:00Z"},
		{"fall back, next day", Window{Start: "02:30", End: "02:45"}, paris, "2025-10-26T01:50:00Z", "2025-10-27T01:30:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from := utc(tt.from)
			got := tt.w.NextOpen(from, tt.loc)
			if want := utc(tt.wantOpen); !got.Equal(want) {
				t.Fatalf("NextOpen(%s) = %s (%s), want %s", from, got.UTC(), got.In(tt.loc), want)
			}
			checkNextOpen(t, tt.w, tt.loc, from, got)
		})
	}
}

// checkNextOpen checks that open is the first instant from `from` on that
// the window contains, by stepping a minute at a time.
func checkNextOpen(t *testing.T, w Window, loc *time.Location, from, open time.Time) {
	t.Helper()
	if !w.Contains(open, loc) || open.Before(from) {
		t.Fatalf("NextOpen(%s) = %s, which the window does not contain", from, open)
	}
	for m := from.Truncate(time.Minute).Add(time.Minute); m.Before(open); m = m.Add(time.Minute) {
		if w.Contains(m, loc) {
			t.Fatalf("NextOpen(%s) = %s, but the window already contains %s", from, open, m)
		}
	}
}

func TestWindowNextOpenEveryZone(t *testing.T) {
	zones := []string{"UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "Asia/Kolkata"}
	windows := []Window{{Start: "02:30", End: "03:00"}, {Start: "23:30", End: "00:30"}, {Start: "00:00", End: "01:00"}, {Start: "01:45", End: "02:15"}}
	for _, z := range zones {
		loc := mustLoad(t, z)
		for _, w := range windows {
			for from := time.Date(2025, 1, 1, 0, 7, 0, 0, time.UTC); from.Year() == 2025; from = from.Add(61*time.Hour + 13*time.Minute) {
				checkNextOpen(t, w, loc, from, w.NextOpen(from, loc))
			}
		}
	}
}

func FuzzParseWindow(f *testing.F) {
	f.Add("01:00-05:00", "Europe/Paris", int64(0))
	f.Add("22:00-02:00", "", int64(1743296400))
	f.Add("23:59-00:00", "Australia/Lord_Howe", int64(-1))
	f.Fuzz(func(t *testing.T, s, tz string, unix int64) {
		w, err := ParseWindow(s, tz)
		if err != nil {
			if ErrorCode(err) != EINVALID {
				t.Fatalf("ParseWindow(%q, %q) error %v is not EINVALID", s, tz, err)
			}
			return
		}
		again, err := ParseWindow(w.Start+"-"+w.End, w.TZ)
		if err != nil || again != w {
			t.Fatalf("ParseWindow round trip of %+v gave %+v, %v", w, again, err)
		}
		loc, _ := w.Location()
		from := time.Unix(unix%(1<<35), 0)
		open := w.NextOpen(from, loc)
		if open.IsZero() || open.Before(from) || !w.Contains(open, loc) || open.Sub(from) > 50*time.Hour {
			t.Fatalf("%s NextOpen(%s) = %s", w, from, open)
		}
	})
}
