package cli

import (
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParsePairs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    map[string]string
		wantErr string
	}{
		{"none", nil, map[string]string{}, ""},
		{"one", []string{"site=paris"}, map[string]string{"site": "paris"}, ""},
		{"value with equals", []string{"url=a=b"}, map[string]string{"url": "a=b"}, ""},
		{"empty value", []string{"ring="}, map[string]string{"ring": ""}, ""},
		{"two", []string{"a=1", "b=2"}, map[string]string{"a": "1", "b": "2"}, ""},
		{"no equals", []string{"site"}, nil, `--tag "site": want key=value`},
		{"empty key", []string{"=x"}, nil, `--tag "=x": want key=value`},
		{"blank key", []string{" =x"}, nil, `--tag " =x": want key=value`},
		{"duplicate", []string{"a=1", "a=2"}, nil, `--tag "a=2": key "a" is given twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePairs("--tag", tt.args)
			checkUsageErr(t, err, tt.wantErr)
			if diff := cmp.Diff(tt.want, got); tt.wantErr == "" && diff != "" {
				t.Errorf("parsePairs(%q) (-want +got):\n%s", tt.args, diff)
			}
		})
	}
}

func TestTagEdits(t *testing.T) {
	current := map[string]string{"site": "paris", "ring": "beta", "hw": "r2"}
	tests := []struct {
		name    string
		args    []string
		want    map[string]string
		wantErr string
	}{
		{"set new", []string{"zone=eu"}, map[string]string{"site": "paris", "ring": "beta", "hw": "r2", "zone": "eu"}, ""},
		{"overwrite", []string{"site=lyon"}, map[string]string{"site": "lyon", "ring": "beta", "hw": "r2"}, ""},
		{"remove", []string{"ring-"}, map[string]string{"site": "paris", "hw": "r2"}, ""},
		{"remove missing is fine", []string{"nope-"}, current, ""},
		{"mixed", []string{"site=lyon", "ring-", "k3-", "new=1"}, map[string]string{"site": "lyon", "hw": "r2", "new": "1"}, ""},
		{"key ending in dash is set", []string{"a-=1"}, map[string]string{"site": "paris", "ring": "beta", "hw": "r2", "a-": "1"}, ""},
		{"value ending in dash", []string{"site=x-"}, map[string]string{"site": "x-", "ring": "beta", "hw": "r2"}, ""},
		{"empty value", []string{"site="}, map[string]string{"site": "", "ring": "beta", "hw": "r2"}, ""},
		{"bare word", []string{"site"}, nil, `tag edit "site": want key=value to set a tag or key- to remove it`},
		{"lone dash", []string{"-"}, nil, `tag edit "-": the tag key is empty`},
		{"empty key", []string{"=v"}, nil, `tag edit "=v": the tag key is empty`},
		{"set and remove", []string{"site=x", "site-"}, nil, `tag edit "site-": tag "site" is changed twice`},
		{"set twice", []string{"a=1", "a=2"}, nil, `tag edit "a=2": tag "a" is changed twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := maps.Clone(current)
			e, err := parseTagEdits(tt.args)
			checkUsageErr(t, err, tt.wantErr)
			if tt.wantErr != "" {
				return
			}
			if diff := cmp.Diff(tt.want, e.apply(current)); diff != "" {
				t.Errorf("apply (-want +got):\n%s", diff)
			}
			if !maps.Equal(before, current) {
				t.Errorf("apply changed its input: %v", current)
			}
		})
	}
}

func TestTagEditsApplyToNil(t *testing.T) {
	e, err := parseTagEdits([]string{"a=1", "b-"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"a": "1"}, e.apply(nil)); diff != "" {
		t.Errorf("apply(nil) (-want +got):\n%s", diff)
	}
	if got := (tagEdits{}).apply(nil); got == nil {
		t.Error("apply(nil) with no edits is nil; want an empty map so the API gets {}")
	}
}

func TestParseOptBool(t *testing.T) {
	yes, no := true, false
	tests := []struct {
		in      string
		want    *bool
		wantErr string
	}{
		{"", nil, ""},
		{"true", &yes, ""},
		{"false", &no, ""},
		{"1", &yes, ""},
		{"maybe", nil, `--online "maybe": want true or false`},
	}
	for _, tt := range tests {
		got, err := parseOptBool("--online", tt.in)
		checkUsageErr(t, err, tt.wantErr)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("parseOptBool(%q) (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in      string
		want    time.Time
		wantErr bool
	}{
		{"", time.Time{}, false},
		{"2026-03-01T08:30:00Z", time.Date(2026, 3, 1, 8, 30, 0, 0, time.UTC), false},
		{"2026-03-01T08:30:00+02:00", time.Date(2026, 3, 1, 6, 30, 0, 0, time.UTC), false},
		{"2026-03-01", time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), false},
		{"90m", now.Add(-90 * time.Minute), false},
		{"1h30m", now.Add(-90 * time.Minute), false},
		{"7d", now.Add(-7 * 24 * time.Hour), false},
		{"0d", now, false},
		{"-1h", time.Time{}, true},
		{"d", time.Time{}, true},
		{"-3d", time.Time{}, true},
		{"yesterday", time.Time{}, true},
		{"99999999d", time.Time{}, true},
	}
	for _, tt := range tests {
		got, err := parseTime("--since", tt.in, now)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseTime(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if !got.Equal(tt.want) {
			t.Errorf("parseTime(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseID(t *testing.T) {
	for _, in := range []string{"0", "-1", "x", "1.5", "", "99999999999999999999"} {
		if _, err := parseID("firmware", in); err == nil {
			t.Errorf("parseID(%q) = nil error, want one", in)
		}
	}
	if id, err := parseID("firmware", "42"); err != nil || id != 42 {
		t.Errorf("parseID(42) = %d, %v", id, err)
	}
}

// checkUsageErr checks that err is a usage error with message want, or nil
// when want is empty.
func checkUsageErr(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var ue *usageError
	if !errors.As(err, &ue) {
		t.Fatalf("error = %v (%T), want usage error %q", err, err, want)
	}
	if err.Error() != want {
		t.Fatalf("error = %q, want %q", err.Error(), want)
	}
}

func FuzzParseTagEdits(f *testing.F) {
	for _, s := range []string{"a=1", "a=1\nb-", "-", "=", "a-=b", "a\nb=c\nc-", "x=y=z", "a=1\na-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args := strings.Split(s, "\n")
		e, err := parseTagEdits(args)
		if err != nil {
			var ue *usageError
			if !errors.As(err, &ue) {
				t.Fatalf("error %v is not a usage error", err)
			}
			return
		}
		if len(e.set)+len(e.remove) != len(args) {
			t.Fatalf("%q: %d sets + %d removes for %d edits", args, len(e.set), len(e.remove), len(args))
		}
		got := e.apply(map[string]string{})
		for k, v := range e.set {
			if k == "" || got[k] != v {
				t.Fatalf("%q: set %q=%q, result %v", args, k, v, got)
			}
		}
		for _, k := range e.remove {
			if _, ok := got[k]; ok || k == "" {
				t.Fatalf("%q: removed %q but result %v", args, k, got)
			}
		}
	})
}

func FuzzParsePairs(f *testing.F) {
	for _, s := range []string{"a=1", "a=1\nb=2", "=", "a", "a=1\na=2", "k=v=w"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		args := strings.Split(s, "\n")
		m, err := parsePairs("--param", args)
		if err != nil {
			return
		}
		if len(m) != len(args) {
			t.Fatalf("%q gave %d pairs", args, len(m))
		}
		for _, arg := range args {
			k, v, _ := strings.Cut(arg, "=")
			if m[k] != v {
				t.Fatalf("%q: %q = %q, want %q", args, k, m[k], v)
			}
		}
	})
}

func FuzzParseTime(f *testing.F) {
	for _, s := range []string{"7d", "90m", "2026-01-02", "2026-01-02T15:04:05Z", "-1h", "1e9h", "999999d"} {
		f.Add(s)
	}
	now := time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseTime("--since", s, now)
		if err != nil {
			return
		}
		if age, ok := parseAge(s); ok {
			if age < 0 || age > maxAge {
				t.Fatalf("parseAge(%q) = %v, outside [0, %v]", s, age, maxAge)
			}
			if got.After(now) {
				t.Fatalf("age %q gave %v, after now", s, got)
			}
		}
	})
}
