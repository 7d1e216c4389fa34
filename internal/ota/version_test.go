package ota

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseVersion(t *testing.T) {
	tests := []struct {
		in   string
		want Version
	}{
		{"1.2.3", Version{Release: []uint64{1, 2, 3}}},
		{"v1.2.3", Version{Release: []uint64{1, 2, 3}}},
		{"V0.0.0", Version{Release: []uint64{0, 0, 0}}},
		{"7", Version{Release: []uint64{7}}},
		{"1.2.3.4", Version{Release: []uint64{1, 2, 3, 4}}},
		{"1.2.3.4-rc.1", Version{Release: []uint64{1, 2, 3, 4}, Prerelease: []string{"rc", "1"}}},
		{"1.0.0-alpha-1.0", Version{Release: []uint64{1, 0, 0}, Prerelease: []string{"alpha-1", "0"}}},
		{"1.0.0+20130313144700", Version{Release: []uint64{1, 0, 0}, Build: []string{"20130313144700"}}},
		{"1.0.0-beta+exp.sha.5114f85", Version{Release: []uint64{1, 0, 0}, Prerelease: []string{"beta"}, Build: []string{"exp", "sha", "5114f85"}}},
		{"1.0.0+001", Version{Release: []uint64{1, 0, 0}, Build: []string{"001"}}}, // leading zeros are fine in build metadata
		{"1.0.0-0a", Version{Release: []uint64{1, 0, 0}, Prerelease: []string{"0a"}}},
		{"18446744073709551615", Version{Release: []uint64{18446744073709551615}}},
	}
	for _, tt := range tests {
		got, err := ParseVersion(tt.in)
		if err != nil {
			t.Errorf("ParseVersion(%q): %v", tt.in, err)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseVersion(%q) mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestParseVersionErrors(t *testing.T) {
	tests := []struct {
		in, msg string
	}{
		{"", "it is empty"},
		{"v", "no release number"},
		{"1.02.3", `part "02" has a leading zero`},
		{"1..2", "empty part"},
		{"1.2.", "empty part"},
		{".1", "empty part"},
		{"1.x", `part "x" is not a number`},
		{"18446744073709551616", "too large"},
		{" 1.0", "whitespace"},
		{"1.0\n", "whitespace"},
		{"1.0\x00", "control characters"},
		{"1.0\xff", "not valid UTF-8"},
		{strings.Repeat("1", 129), "129 bytes long, at most 128"},
		{"1.0.0-", "empty pre-release identifier"},
		{"1.0.0-rc..1", "empty pre-release identifier"},
		{"1.0.0-01", `numeric pre-release identifier "01" has a leading zero`},
		{"1.0.0-r@c", `pre-release identifier "r@c" may hold only`},
		{"1.0.0+", "empty build metadata identifier"},
		{"1.0.0+a+b", `build metadata identifier "a+b" may hold only`},
		{"-rc.1", "no release number"},
		{"vv1", `part "v1" is not a number`},
		{"beta-ice", `part "beta" is not a number`},
	}
	for _, tt := range tests {
		_, err := ParseVersion(tt.in)
		if err == nil {
			t.Errorf("ParseVersion(%q) succeeded, want an error containing %q", tt.in, tt.msg)
			continue
		}
		if ErrorCode(err) != EINVALID || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("ParseVersion(%q) = %v (%s), want EINVALID containing %q", tt.in, err, ErrorCode(err), tt.msg)
		}
	}
}

func TestParseVersionQuotesLongInputShort(t *testing.T) {
	_, err := ParseVersion(strings.Repeat("9", 10000))
	if err == nil || len(err.Error()) > 200 {
		t.Fatalf("error for a 10000-byte version should be short, got %d bytes: %v", len(err.Error()), err)
	}
}

// TestCompareVersionsOrder checks the precedence examples of semver.org and
// the dotted numeric extension, each version lower than the next.
func TestCompareVersionsOrder(t *testing.T) {
	ordered := []string{
		"0.9", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
		"1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.0.1-rc.1", "1.0.0.1", "1.0.1", "1.1",
		"2.0.0", "2.1.0", "2.1.1", "10", "18446744073709551615",
	}
	for i := range ordered {
		for j := range ordered {
			got, err := CompareVersions(ordered[i], ordered[j])
			if err != nil {
				t.Fatalf("CompareVersions(%q, %q): %v", ordered[i], ordered[j], err)
			}
			if want := cmpIndex(i, j); got != want {
				t.Errorf("CompareVersions(%q, %q) = %d, want %d", ordered[i], ordered[j], got, want)
			}
		}
	}
}

func cmpIndex(i, j int) int {
	switch {
	case i < j:
		return -1
	case i > j:
		return 1
	}
	return 0
}

func TestCompareVersionsEqual(t *testing.T) {
	tests := [][2]string{
		{"1.2", "1.2.0.0"},
		{"v1.0.0", "1.0.0"},
		{"1.0.0+a", "1.0.0+b"},
		{"1-rc.1", "1.0.0-rc.1"},
		{"1.0.0-rc.99999999999999999999999", "v1.0.0-rc.99999999999999999999999"},
	}
	for _, tt := range tests {
		if got, err := CompareVersions(tt[0], tt[1]); err != nil || got != 0 {
			t.Errorf("CompareVersions(%q, %q) = %d, %v; want 0", tt[0], tt[1], got, err)
		}
	}
}

func TestCompareVersionsError(t *testing.T) {
	for _, pair := range [][2]string{{"beta", "1.0"}, {"1.0", "1.0-"}} {
		if _, err := CompareVersions(pair[0], pair[1]); ErrorCode(err) != EINVALID {
			t.Errorf("CompareVersions(%q, %q) error = %v, want EINVALID", pair[0], pair[1], err)
		}
	}
}

func TestSameVersion(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"1.0.0", "1.0.0", true},
		{"v1.0.0", "1.0.0", true},
		{"1.2", "1.2.0", true},
		{"beta-ice", "beta-ice", true},
		{"1.0.0", "1.0.0+b7", true},
		{"1.0.0+b6", "1.0.0+b7", false},
		{"1.0.0-rc.1", "1.0.0", false},
		{"beta-ice", "Beta-ice", false},
		{"1.0.1", "1.0.0", false},
	}
	for _, tt := range tests {
		if got := SameVersion(tt.a, tt.b); got != tt.want {
			t.Errorf("SameVersion(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestIsDowngrade(t *testing.T) {
	tests := []struct {
		current, target string
		want            bool
	}{
		{"2.0.0", "1.9.9", true},
		{"1.0.0", "1.0.0-rc.1", true},
		{"1.0.0", "1.0.1", false},
		{"1.0.0", "1.0", false},
		{"beta", "1.0.0", false},
		{"2.0.0", "alpha", false},
	}
	for _, tt := range tests {
		if got := IsDowngrade(tt.current, tt.target); got != tt.want {
			t.Errorf("IsDowngrade(%q, %q) = %v, want %v", tt.current, tt.target, got, tt.want)
		}
	}
}

func TestValidateFirmwareVersion(t *testing.T) {
	tests := []struct {
		version string
		from    []string
		msg     string // "" for no error
	}{
		{"1.2.3", nil, ""},
		{"v2.0.0-rc.1+b5", nil, ""},
		{"1.2.3.4", []string{"1.2.3.3", "beta-ice"}, ""},
		{"beta-ice", []string{"alpha-fire"}, ""},
		{"beta-ice", nil, `version "beta-ice" is neither SemVer nor dotted numeric (part "beta" is not a number): give explicit from-versions to use it`},
		{"1.02", nil, `part "02" has a leading zero`},
		{"", nil, `version "" is not usable: it is empty`},
		{"1 0", []string{"x"}, "whitespace"},
		{"1.0.0", []string{""}, `from-version "" is not usable`},
		{"1.0.0", []string{"v1.0.0"}, "is the firmware's own version"},
		{"2.0", []string{"1.0", "1.0.0"}, `from-version "1.0.0" is listed twice`},
	}
	for _, tt := range tests {
		err := ValidateFirmwareVersion(tt.version, tt.from)
		switch {
		case tt.msg == "" && err != nil:
			t.Errorf("ValidateFirmwareVersion(%q, %q): %v", tt.version, tt.from, err)
		case tt.msg != "" && (ErrorCode(err) != EINVALID || !strings.Contains(err.Error(), tt.msg)):
			t.Errorf("ValidateFirmwareVersion(%q, %q) = %v, want EINVALID containing %q", tt.version, tt.from, err, tt.msg)
		}
	}
}

func TestFirmwareUpgradesFrom(t *testing.T) {
	tests := []struct {
		version string
		from    []string
		current string
		want    bool
	}{
		{"1.2.0", nil, "1.1.9", true},
		{"1.2.0", nil, "v1.1.9", true},
		{"1.2.0", nil, "1.2.0-rc.3", true},
		{"1.2.0", nil, "1.2.0", false},
		{"1.2.0", nil, "1.2", false},
		{"1.2.0", nil, "1.3.0", false},
		{"1.2.0", nil, "beta-ice", false},
		{"1.2.0", nil, "", false},
		{"beta-ice", nil, "1.0.0", false},
		{"1.2.0", []string{"1.0.0"}, "v1.0.0", true},
		{"1.2.0", []string{"1.0.0"}, "1.0", true},
		{"1.2.0", []string{"1.0.0"}, "1.1.0", false},
		{"1.2.0", []string{"3.0.0"}, "3.0.0", true}, // explicit from-versions may downgrade
		{"beta-ice", []string{"alpha-fire"}, "alpha-fire", true},
		{"beta-ice", []string{"alpha-fire"}, "beta-ice", false},
		{"1.2.0", []string{"1.2.0"}, "1.2.0", false}, // never to itself
	}
	for _, tt := range tests {
		f := Firmware{Version: tt.version, FromVersions: tt.from}
		if got := f.UpgradesFrom(tt.current); got != tt.want {
			t.Errorf("Firmware{%q from %q}.UpgradesFrom(%q) = %v, want %v", tt.version, tt.from, tt.current, got, tt.want)
		}
	}
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"1.2.3", "v1.0.0-rc.1+b.5", "1.2.3.4-rc.1", "7", "1.02", "beta-ice", "1.0.0-0a.1", "1..2", ""} {
		f.Add(s, "1.0.0")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		va, errA := ParseVersion(a)
		vb, errB := ParseVersion(b)
		if errA != nil {
			var e *Error
			if !errors.As(errA, &e) || e.Code != EINVALID {
				t.Fatalf("ParseVersion(%q) error %v is not an EINVALID *Error", a, errA)
			}
			return
		}
		checkRoundTrip(t, va)
		if errB != nil {
			return
		}
		checkCompare(t, va, vb)
	})
}

func checkRoundTrip(t *testing.T, v Version) {
	t.Helper()
	again, err := ParseVersion(v.String())
	if err != nil {
		t.Fatalf("String() %q of a parsed version does not parse: %v", v.String(), err)
	}
	if !reflect.DeepEqual(v, again) || !v.Equal(again) || v.Compare(again) != 0 {
		t.Fatalf("round trip of %q gave %#v, want %#v", v.String(), again, v)
	}
}

func checkCompare(t *testing.T, a, b Version) {
	t.Helper()
	ab, ba := a.Compare(b), b.Compare(a)
	if ab != -ba || ab < -1 || ab > 1 {
		t.Fatalf("Compare(%s, %s) = %d but Compare(%s, %s) = %d", a, b, ab, b, a, ba)
	}
	if a.Compare(a) != 0 {
		t.Fatalf("Compare(%s, itself) != 0", a)
	}
	if a.Equal(b) && ab != 0 {
		t.Fatalf("%s and %s are Equal but compare %d", a, b, ab)
	}
	if a.String() == b.String() && !a.Equal(b) {
		t.Fatalf("%s and %s print the same but are not Equal", a, b)
	}
	if SameVersion(a.String(), b.String()) && ab != 0 {
		t.Fatalf("SameVersion(%s, %s) but they compare %d", a, b, ab)
	}
}

func FuzzCompareVersions(f *testing.F) {
	f.Add("1.0.0-alpha", "1.0.0-alpha.1", "1.0")
	f.Add("1.2.3.4-rc.1", "1.2.3.4", "1.2.3.4.0")
	f.Add("1.0.0-rc.9", "1.0.0-rc.10", "1.0.0-rc.a")
	f.Fuzz(func(t *testing.T, a, b, c string) {
		ab, errAB := CompareVersions(a, b)
		bc, errBC := CompareVersions(b, c)
		ac, errAC := CompareVersions(a, c)
		if errAB != nil || errBC != nil || errAC != nil {
			return
		}
		if ab <= 0 && bc <= 0 && ac > 0 {
			t.Fatalf("%q <= %q <= %q but %q > %q", a, b, c, a, c)
		}
		if ab == 0 && bc == 0 && ac != 0 {
			t.Fatalf("%q == %q == %q but Compare(%q, %q) = %d", a, b, c, a, c, ac)
		}
		if ab >= 0 && bc >= 0 && ac < 0 {
			t.Fatalf("%q >= %q >= %q but %q < %q", a, b, c, a, c)
		}
	})
}
