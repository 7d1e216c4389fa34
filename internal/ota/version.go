package ota

import (
	"errors"
	"slices"
	"strconv"

	"github.com/otter-ota/otter/sdk/wire"
)

// MaxVersionLen is the longest version string accepted, in bytes: the
// protocol's (wire.VersionRule).
const MaxVersionLen = wire.MaxVersionLen

// Version is a parsed firmware version. It is the device protocol's type, so
// that the server and the device SDK order versions the same way.
type Version = wire.Version

// ParseVersion parses s as SemVer 2.0 or as a dotted numeric version, with an
// optional leading "v" or "V". It returns an EINVALID *Error saying what is
// wrong otherwise.
func ParseVersion(s string) (Version, error) {
	v, err := wire.ParseVersion(s)
	if err != nil {
		return Version{}, Errorf(EINVALID, "%s", err.Error())
	}
	return v, nil
}

// parseVersion returns the version or the reason it is not one.
func parseVersion(s string) (Version, string) {
	v, err := wire.ParseVersion(s)
	var ve *wire.VersionError
	if errors.As(err, &ve) {
		return Version{}, ve.Reason
	}
	return v, ""
}

// checkVersionText checks what every version string, parsable or opaque,
// must satisfy: the protocol's rule (wire.VersionRule), so a version the
// server accepts is one every device accepts too.
func checkVersionText(s string) string {
	if r := wire.VersionReason(s); r != "" {
		return r + "; use " + wire.VersionRule
	}
	return ""
}

// quoteInput quotes s for a message, shortening it so that a hostile
// megabyte never ends up in a log line.
func quoteInput(s string) string {
	if len(s) <= MaxVersionLen {
		return strconv.Quote(s)
	}
	return strconv.Quote(wire.Clip(s, 40))
}

// CompareVersions parses a and b and compares them as Version.Compare does.
// It fails with EINVALID when either does not parse.
func CompareVersions(a, b string) (int, error) {
	va, err := ParseVersion(a)
	if err != nil {
		return 0, err
	}
	vb, err := ParseVersion(b)
	if err != nil {
		return 0, err
	}
	return va.Compare(vb), nil
}

// SameVersion reports whether a and b name the same version (see
// wire.SameVersion): equal strings, or equal precedence and no conflicting
// build metadata.
func SameVersion(a, b string) bool { return wire.SameVersion(a, b) }

// IsDowngrade reports whether moving from current to target goes to a lower
// version. Opaque versions are unordered, so they are never downgrades: an
// explicit from-version list governs them instead. The device SDK decides
// with the same function (wire.IsDowngrade).
func IsDowngrade(current, target string) bool { return wire.IsDowngrade(current, target) }

// ValidateFirmwareVersion checks a new firmware's version and from-versions.
// A version that is neither SemVer nor dotted numeric is opaque: it cannot be
// ordered, so it is accepted only with explicit from-versions.
func ValidateFirmwareVersion(version string, from []string) error {
	if reason := checkVersionText(version); reason != "" {
		return Errorf(EINVALID, "version %s is not usable: %s", quoteInput(version), reason)
	}
	if err := validateFromVersions(version, from); err != nil {
		return err
	}
	if _, reason := parseVersion(version); reason != "" && len(from) == 0 {
		return Errorf(EINVALID,
			"version %s is neither SemVer nor dotted numeric (%s): give explicit from-versions to use it",
			quoteInput(version), reason)
	}
	return nil
}

func validateFromVersions(version string, from []string) error {
	for i, f := range from {
		if reason := checkVersionText(f); reason != "" {
			return Errorf(EINVALID, "from-version %s is not usable: %s", quoteInput(f), reason)
		}
		if SameVersion(f, version) {
			return Errorf(EINVALID, "from-version %s is the firmware's own version: a firmware cannot upgrade a device to the version it runs", quoteInput(f))
		}
		if slices.ContainsFunc(from[:i], func(g string) bool { return SameVersion(f, g) }) {
			return Errorf(EINVALID, "from-version %s is listed twice", quoteInput(f))
		}
	}
	return nil
}

// UpgradesFrom reports whether a device running current may take f. With
// FromVersions, current must be one of them (after normalisation); without,
// current and f.Version must both parse and current must be lower. It is
// never true when current is already f.Version.
func (f Firmware) UpgradesFrom(current string) bool {
	if current == "" || SameVersion(current, f.Version) {
		return false
	}
	if len(f.FromVersions) > 0 {
		return slices.ContainsFunc(f.FromVersions, func(v string) bool { return SameVersion(current, v) })
	}
	c, err := CompareVersions(current, f.Version)
	return err == nil && c < 0
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
