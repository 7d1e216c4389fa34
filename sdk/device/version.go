package device

import "strings"

// CompareVersions orders two firmware versions and returns -1, 0 or +1. It
// understands SemVer and looser dotted versions alike:
//
//   - a leading "v" is ignored, and so is build metadata after "+";
//   - the core before any "-" is split on "."; missing parts count as 0,
//     so "1.2" equals "1.2.0"; numeric parts compare as numbers, other
//     parts as text, and a number sorts before text;
//   - with equal cores, a pre-release ("1.0.0-rc.1") sorts before the
//     release, and pre-releases compare part by part as in SemVer.
//
// Every pair of strings is ordered, so a device never fails to decide.
func CompareVersions(a, b string) int {
	ca, pa := splitVersion(a)
	cb, pb := splitVersion(b)
	if c := compareParts(strings.Split(ca, "."), strings.Split(cb, "."), true); c != 0 {
		return c
	}
	switch {
	case pa == pb:
		return 0
	case pa == "":
		return 1
	case pb == "":
		return -1
	}
	return compareParts(strings.Split(pa, "."), strings.Split(pb, "."), false)
}

// splitVersion returns the core and the pre-release of v.
func splitVersion(v string) (core, pre string) {
	if len(v) > 1 && (v[0] == 'v' || v[0] == 'V') && isDigit(v[1]) {
		v = v[1:]
	}
	v, _, _ = strings.Cut(v, "+")
	core, pre, _ = strings.Cut(v, "-")
	return core, pre
}

// compareParts compares dotted parts; padZero makes a missing part equal
// to "0" (cores), otherwise fewer parts sort first (pre-releases).
func compareParts(a, b []string, padZero bool) int {
	for i := 0; i < max(len(a), len(b)); i++ {
		if i >= len(a) || i >= len(b) {
			if !padZero {
				return compareInt(len(a), len(b))
			}
		}
		if c := comparePart(partAt(a, i), partAt(b, i)); c != 0 {
			return c
		}
	}
	return 0
}

func partAt(p []string, i int) string {
	if i < len(p) {
		return p[i]
	}
	return "0"
}

func comparePart(a, b string) int {
	na, nb := isNumber(a), isNumber(b)
	switch {
	case na && nb:
		a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
		if c := compareInt(len(a), len(b)); c != 0 { // any length of digits
			return c
		}
		return strings.Compare(a, b)
	case na:
		return -1
	case nb:
		return 1
	}
	return strings.Compare(a, b)
}

func compareInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func isNumber(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
