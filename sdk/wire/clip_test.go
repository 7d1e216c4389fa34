package wire

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	for _, tt := range []struct {
		s    string
		n    int
		want string
	}{
		{"", 10, ""},
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"eleven byte", 10, "eleven ..."},
		{"héhéhé", 8, "héh..."},   // the cut would split the second é
		{"日本語のテキスト", 10, "日本..."}, // 3-byte runes: 6 bytes of text, then the mark
		{"🦦🦦", 6, "..."},          // not even one 4-byte rune fits before the mark
		{"abcdef", 2, "ab"},       // no room for the mark
		{"éé", 1, ""},             // no room for a rune
		{"abc", -1, ""},
		{"a\xffb", 10, "a\uFFFDb"},            // invalid bytes are replaced, even when nothing is cut
		{"\xff\xfe\xfd\xfc\xfb", 4, "\uFFFD"}, // a run of invalid bytes is one U+FFFD
		{strings.Repeat("x", 100), 64, strings.Repeat("x", 61) + "..."},
	} {
		if got := Clip(tt.s, tt.n); got != tt.want {
			t.Errorf("Clip(%q, %d) = %q, want %q", tt.s, tt.n, got, tt.want)
		}
	}
}

func FuzzClip(f *testing.F) {
	for _, s := range []string{"", "abc", "héhéhé", "日本語のテキスト", "🦦🦦🦦", "a\xffb", "\x80\x80\x80\x80"} {
		for _, n := range []int{0, 2, 3, 4, 7, 64} {
			f.Add(s, n)
		}
	}
	f.Fuzz(func(t *testing.T, s string, n int) {
		n %= 2048
		got := Clip(s, n)
		if !utf8.ValidString(got) {
			t.Fatalf("Clip(%q, %d) = %q: not valid UTF-8", s, n, got)
		}
		valid := strings.ToValidUTF8(s, "\uFFFD")
		if len(valid) <= n {
			if got != valid {
				t.Fatalf("Clip(%q, %d) = %q; it fits, want it whole", s, n, got)
			}
			return
		}
		if len(got) > max(n, 0) {
			t.Fatalf("Clip(%q, %d) = %q: %d bytes, more than the bound", s, n, got, len(got))
		}
		if text := strings.TrimSuffix(got, clipMark); !strings.HasPrefix(valid, text) {
			t.Fatalf("Clip(%q, %d) = %q: not a prefix of the text", s, n, got)
		}
	})
}
