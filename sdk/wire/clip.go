package wire

import (
	"strings"
	"unicode/utf8"
)

const (
	// clipMark ends a clipped text.
	clipMark = "..."
	// maxQuoted bounds an input quoted in an error of this package.
	maxQuoted = 80
)

// Clip shortens s to at most n bytes for a message or a log line, so that a
// hostile or careless input can make neither arbitrarily long. A longer s
// is cut at a rune boundary and ends with "..." (within the n bytes).
// Invalid UTF-8 becomes U+FFFD first: the result is always valid UTF-8, so
// a JSON encoder does not replace bytes of it (and lengthen it) after the
// cut.
func Clip(s string, n int) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, string(utf8.RuneError))
	}
	n = max(n, 0)
	if len(s) <= n {
		return s
	}
	cut, mark := n-len(clipMark), clipMark
	if cut < 0 { // no room for the mark
		cut, mark = n, ""
	}
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
