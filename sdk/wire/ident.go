package wire

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The identifier rules. Each is defined here once and checked by these
// functions only: the server (MQTT topics and user names, the HTTP device
// API, the operator API, the CLI, the console, CSV import, the store) and
// the SDK. docs/protocol.md section 1 states the same rules.
const (
	// MaxKeyLength bounds keys (product, device, module, tag and param
	// names), so that a topic always fits the limits of common brokers.
	MaxKeyLength = 64
	// MaxTagValue and MaxParamValue bound tag and firmware param values.
	MaxTagValue   = 256
	MaxParamValue = 1024

	// KeyRule is the rule of product keys, device keys, modules, and the
	// names of tags and params. Case matters. No ':' (it would break the
	// HTTP Basic user name), '/', '+' or '#' (MQTT topics), or leading
	// '.', '_' or '-' (hidden files, flags).
	KeyRule = "1-64 characters of letters, digits, '.', '_' or '-', starting with a letter or digit (case matters)"
	// KeyPattern is KeyRule as a regular expression, for HTML forms.
	KeyPattern = `[A-Za-z0-9][A-Za-z0-9._\-]{0,63}`
	// VersionRule is the rule of versions.
	VersionRule = "1-128 bytes of UTF-8 without whitespace or control characters"
	// TagValueRule and ParamValueRule are the rules of tag and param
	// values; tags cannot hold ',' because the device CSV import separates
	// tags with it.
	TagValueRule   = "1-256 bytes of UTF-8 without control characters or ','"
	ParamValueRule = "1-1024 bytes of UTF-8 without control characters"
)

// CheckKey reports, as a *Error of code malformed, why s cannot be a key
// (KeyRule). what names the key in the message: "product key", "device
// key", "module", "tag name" or "param name".
func CheckKey(what, s string) error { return problemError(keyProblem(what, s)) }

// CheckVersion reports, as a *Error of code malformed, why s cannot be a
// version (VersionRule). Versions that are neither SemVer nor dotted numbers
// pass: they are opaque.
func CheckVersion(what, s string) error { return problemError(versionProblem(what, s)) }

// CheckTagValue reports, as a *Error of code malformed, why s cannot be the
// value of tag name (TagValueRule).
func CheckTagValue(name, s string) error {
	return problemError(valueProblem("tag "+name, s, MaxTagValue, TagValueRule, ","))
}

// CheckParamValue reports, as a *Error of code malformed, why s cannot be
// the value of param name (ParamValueRule).
func CheckParamValue(name, s string) error {
	return problemError(valueProblem("param "+name, s, MaxParamValue, ParamValueRule, ""))
}

func problemError(p string) error {
	if p == "" {
		return nil
	}
	return &Error{Code: CodeMalformed, Message: p}
}

func keyProblem(what, s string) string {
	if r := keyReason(s); r != "" {
		return fmt.Sprintf("%s %s is not valid: %s; use %s", what, strconv.Quote(Clip(s, maxQuoted)), r, KeyRule)
	}
	return ""
}

func keyReason(s string) string {
	switch {
	case s == "":
		return "it is empty"
	case len(s) > MaxKeyLength:
		return fmt.Sprintf("it is %d bytes long, at most %d are allowed", len(s), MaxKeyLength)
	case !isAlnum(s[0]):
		return fmt.Sprintf("it starts with %q", rune(s[0]))
	}
	for _, r := range s {
		if r > unicode.MaxASCII || !isAlnum(byte(r)) && r != '.' && r != '_' && r != '-' {
			return fmt.Sprintf("it contains %q", r)
		}
	}
	return ""
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// VersionReason says why s cannot be a version (VersionRule), or "" when it
// can: "it is empty", "it contains whitespace", and so on.
func VersionReason(s string) string {
	switch {
	case s == "":
		return "it is empty"
	case len(s) > MaxVersionLen:
		return fmt.Sprintf("it is %d bytes long, at most %d are allowed", len(s), MaxVersionLen)
	case !utf8.ValidString(s):
		return "it is not valid UTF-8"
	case strings.IndexFunc(s, unicode.IsSpace) >= 0:
		return "it contains whitespace"
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return "it contains control characters"
	}
	return ""
}

func versionProblem(what, s string) string {
	if r := VersionReason(s); r != "" {
		return fmt.Sprintf("%s %s is not valid: %s; use %s", what, strconv.Quote(Clip(s, maxQuoted)), r, VersionRule)
	}
	return ""
}

func valueProblem(what, s string, limit int, rule, refused string) string {
	var r string
	switch {
	case s == "":
		r = "it is empty"
	case len(s) > limit:
		r = fmt.Sprintf("it is %d bytes long, at most %d are allowed", len(s), limit)
	case !utf8.ValidString(s):
		r = "it is not valid UTF-8"
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		r = "it contains control characters"
	case refused != "" && strings.ContainsAny(s, refused):
		r = fmt.Sprintf("it contains %q", refused)
	default:
		return ""
	}
	return fmt.Sprintf("the value of %s is not valid: %s; use %s", what, r, rule)
}
