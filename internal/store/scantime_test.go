package store

import (
	"testing"
	"time"
)

func TestParseTextTime(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
	}{
		{"2026-12-01 11:48:00.123456+00:00", time.Date(2026, 12, 1, 11, 48, 0, 123456000, time.UTC)},
		{"2026-12-01 11:48:00+00:00", time.Date(2026, 12, 1, 11, 48, 0, 0, time.UTC)},
		{"2026-12-01 11:48:00.5-02:30", time.Date(2026, 12, 1, 14, 18, 0, 500000000, time.UTC)},
		{"2026-12-01T11:48:00.000000001+01:00", time.Date(2026, 12, 1, 10, 48, 0, 1, time.UTC)},
		{"2026-12-01 11:48:00Z", time.Date(2026, 12, 1, 11, 48, 0, 0, time.UTC)},
		// Other layouts the driver reads go through time.Parse.
		{"2026-12-01 11:48:00", time.Date(2026, 12, 1, 11, 48, 0, 0, time.UTC)},
		{"2026-12-01 11:48", time.Date(2026, 12, 1, 11, 48, 0, 0, time.UTC)},
		{"2026-12-01", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		got, err := parseTextTime(tt.in)
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("parseTextTime(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		// The fast path agrees with time.Parse wherever it answers.
		if fast, ok := parseSQLiteTime(tt.in); ok {
			ref, err := time.Parse("2006-01-02 15:04:05.999999999-07:00", tt.in)
			if err != nil {
				ref, err = time.Parse(time.RFC3339Nano, tt.in)
			}
			if err == nil && !fast.Equal(ref) {
				t.Errorf("parseSQLiteTime(%q) = %v; time.Parse says %v", tt.in, fast, ref)
			}
		}
	}
	for _, bad := range []string{"", "yesterday", "2026-02-30 10:00:00+00:00", "2026-12-01 25:00:00+00:00",
		"2026-12-01 11:48:00.+00:00", "2026-12-01 11:48:00+0000x"} {
		if got, err := parseTextTime(bad); err == nil {
			t.Errorf("parseTextTime(%q) = %v, want an error", bad, got)
		}
	}
}

func TestParseSQLiteTimeAllocates(t *testing.T) {
	n := testing.AllocsPerRun(100, func() {
		if _, ok := parseSQLiteTime("2026-12-01 11:48:00.123456+00:00"); !ok {
			t.Fatal("not parsed")
		}
	})
	if n != 0 {
		t.Errorf("%v allocations per time, want none", n)
	}
}

func TestInPadded(t *testing.T) {
	for _, n := range []int{1, 2, 3, 5, 100, 128, 129} {
		vs := make([]int64, n)
		for i := range vs {
			vs[i] = int64(i + 1)
		}
		var a args
		in := inPadded(&a, vs)
		if len(a)&(len(a)-1) != 0 || len(a) < n || len(a) >= 2*n && n > 1 {
			t.Errorf("%d values padded to %d, want the next power of two", n, len(a))
		}
		for i, v := range a {
			if want := vs[min(i, n-1)]; v != want {
				t.Fatalf("%d values: argument %d is %v, want %v (%s)", n, i, v, want, in)
			}
		}
	}
}
