package wire

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Version is a parsed firmware version: SemVer 2.0 (three release parts) or
// dotted numeric (one or more release parts, e.g. 1.2.3.4), each with an
// optional pre-release and build metadata. The server and the device SDK
// order versions with this one type, so they never disagree on what is a
// downgrade.
type Version struct {
	// Release holds the numeric parts; missing trailing parts compare as 0.
	Release []uint64
	// Prerelease holds the identifiers after '-'; a version with any ranks
	// below the same release without.
	Prerelease []string
	// Build holds the identifiers after '+'; they never affect ordering.
	Build []string
}

// VersionError says why a string is not an ordered version.
type VersionError struct {
	Input  string
	Reason string
}

func (e *VersionError) Error() string {
	return "version " + quoteVersion(e.Input) + ": " + e.Reason
}

// ParseVersion parses s as SemVer 2.0 or as a dotted numeric version, with
// an optional leading "v" or "V". Any other string is an opaque version: it
// is a valid version (see VersionReason) but has no order, and
// ParseVersion returns a *VersionError saying why.
func ParseVersion(s string) (Version, error) {
	v, reason := parseVersion(s)
	if reason != "" {
		return Version{}, &VersionError{Input: s, Reason: reason}
	}
	return v, nil
}

func parseVersion(s string) (Version, string) {
	if reason := VersionReason(s); reason != "" {
		return Version{}, reason
	}
	if s[0] == 'v' || s[0] == 'V' {
		s = s[1:]
	}
	var v Version
	var reason string
	s, build, hasBuild := strings.Cut(s, "+")
	if hasBuild {
		if v.Build, reason = parseIdentifiers(build, "build metadata", false); reason != "" {
			return Version{}, reason
		}
	}
	release, pre, hasPre := strings.Cut(s, "-")
	if hasPre {
		if v.Prerelease, reason = parseIdentifiers(pre, "pre-release", true); reason != "" {
			return Version{}, reason
		}
	}
	if v.Release, reason = parseRelease(release); reason != "" {
		return Version{}, reason
	}
	return v, ""
}

func parseRelease(s string) ([]uint64, string) {
	if s == "" {
		return nil, "it has no release number before the pre-release or build part"
	}
	parts := strings.Split(s, ".")
	nums := make([]uint64, len(parts))
	for i, p := range parts {
		n, reason := parseReleasePart(p)
		if reason != "" {
			return nil, reason
		}
		nums[i] = n
	}
	return nums, ""
}

func parseReleasePart(p string) (uint64, string) {
	switch {
	case p == "":
		return 0, "it has an empty part (two dots in a row, or a dot at an end)"
	case !isDigits(p):
		return 0, fmt.Sprintf("part %q is not a number", p)
	case len(p) > 1 && p[0] == '0':
		return 0, fmt.Sprintf("part %q has a leading zero", p)
	}
	n, err := strconv.ParseUint(p, 10, 64)
	if err != nil {
		return 0, fmt.Sprintf("part %q is too large (at most %d)", p, uint64(1<<64-1))
	}
	return n, ""
}

// parseIdentifiers parses the dot-separated identifiers of a pre-release or
// build part; numeric pre-release identifiers must not have leading zeros.
func parseIdentifiers(s, what string, numericRule bool) ([]string, string) {
	ids := strings.Split(s, ".")
	for _, id := range ids {
		switch {
		case id == "":
			return nil, fmt.Sprintf("it has an empty %s identifier", what)
		case !isIdentifier(id):
			return nil, fmt.Sprintf("%s identifier %q may hold only letters, digits and '-'", what, id)
		case numericRule && len(id) > 1 && id[0] == '0' && isDigits(id):
			return nil, fmt.Sprintf("numeric %s identifier %q has a leading zero", what, id)
		}
	}
	return ids, ""
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func isIdentifier(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
			return false
		}
	}
	return true
}

// quoteVersion quotes s for a message, shortening it so that a hostile
// megabyte never ends up in a log line.
func quoteVersion(s string) string {
	const show = 40
	if len(s) <= MaxVersionLen {
		return strconv.Quote(s)
	}
	return strconv.Quote(s[:show]) + "..."
}

// String returns the canonical form of v: release parts joined by dots, then
// "-" and the pre-release, then "+" and the build metadata, without a "v".
func (v Version) String() string {
	var b strings.Builder
	for i, n := range v.Release {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strconv.FormatUint(n, 10))
	}
	if len(v.Prerelease) > 0 {
		b.WriteByte('-')
		b.WriteString(strings.Join(v.Prerelease, "."))
	}
	if len(v.Build) > 0 {
		b.WriteByte('+')
		b.WriteString(strings.Join(v.Build, "."))
	}
	return b.String()
}

// Compare returns -1, 0 or +1 as v orders before, with or after o under the
// SemVer precedence rules, extended so that missing release parts count as 0
// (1.2 == 1.2.0.0). Build metadata is ignored.
func (v Version) Compare(o Version) int {
	if c := compareRelease(v.Release, o.Release); c != 0 {
		return c
	}
	return comparePrerelease(v.Prerelease, o.Prerelease)
}

// Equal reports whether v and o name the same build: equal precedence and
// the same build metadata. It is stricter than Compare(o) == 0 because two
// builds of one version may not be interchangeable (a delta file made from
// one does not apply to the other).
func (v Version) Equal(o Version) bool {
	return v.Compare(o) == 0 && slices.Equal(v.Build, o.Build)
}

func compareRelease(a, b []uint64) int {
	for i := range max(len(a), len(b)) {
		var x, y uint64
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			return cmp.Compare(x, y)
		}
	}
	return 0
}

func comparePrerelease(a, b []string) int {
	switch {
	case len(a) == 0 && len(b) == 0:
		return 0
	case len(a) == 0:
		return 1 // a release ranks above its pre-releases
	case len(b) == 0:
		return -1
	}
	for i := range min(len(a), len(b)) {
		if c := compareIdentifier(a[i], b[i]); c != 0 {
			return c
		}
	}
	return cmp.Compare(len(a), len(b))
}

// compareIdentifier orders numeric identifiers numerically (by length first,
// which is exact without leading zeros and never overflows), numeric below
// alphanumeric, and alphanumeric ones in ASCII order.
func compareIdentifier(x, y string) int {
	xn, yn := isDigits(x), isDigits(y)
	switch {
	case xn && yn:
		if len(x) != len(y) {
			return cmp.Compare(len(x), len(y))
		}
		return strings.Compare(x, y)
	case xn:
		return -1
	case yn:
		return 1
	}
	return strings.Compare(x, y)
}

// Order is how one version relates to another.
type Order int

// Orders. Unordered is the zero value: a caller that forgets to check it
// is never told that an opaque version is lower or higher.
const (
	Unordered Order = iota // at least one of the two is opaque: no order
	Lower
	Same
	Higher
)

func (o Order) String() string {
	switch o {
	case Lower:
		return "lower"
	case Same:
		return "same"
	case Higher:
		return "higher"
	}
	return "unordered"
}

// OrderVersions says how a relates to b: Lower, Same (equal precedence;
// build metadata is ignored) or Higher when both parse as versions, and
// Unordered when either is opaque. Opaque versions are never lower or
// higher than anything: a firmware's explicit from-versions govern them.
func OrderVersions(a, b string) Order {
	va, ea := ParseVersion(a)
	vb, eb := ParseVersion(b)
	if ea != nil || eb != nil {
		return Unordered
	}
	return Order(va.Compare(vb) + 2)
}

// IsDowngrade reports whether moving from current to target goes to a
// lower version. Opaque versions are unordered, so they are never
// downgrades; both the server and the device SDK decide with this.
func IsDowngrade(current, target string) bool {
	return OrderVersions(target, current) == Lower
}

// SameVersion reports whether a and b name the same version: they are equal
// strings, or both parse with equal precedence ("v1.0.0" is "1.0.0", "1.2"
// is "1.2.0") and, when both carry build metadata, the same one. A version
// without build metadata is unspecific, so a device that reports "1.0.0"
// runs firmware "1.0.0+b7".
func SameVersion(a, b string) bool {
	if a == b {
		return true
	}
	va, reasonA := parseVersion(a)
	vb, reasonB := parseVersion(b)
	if reasonA != "" || reasonB != "" || va.Compare(vb) != 0 {
		return false
	}
	return len(va.Build) == 0 || len(vb.Build) == 0 || slices.Equal(va.Build, vb.Build)
}
