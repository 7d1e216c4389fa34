package wire

import (
	"regexp"
	"strings"
	"testing"
)

// TestIdentifierRules is the table of every identifier rule: keys (product,
// device, module, tag and param names), versions, tag and param values.
func TestIdentifierRules(t *testing.T) {
	long := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		rule  string
		check func(string) error
		ok    []string
		bad   []string
	}{
		{"key", func(s string) error { return CheckKey("module", s) },
			[]string{"a", "Z", "0", "default", "Modem", "thermostat-v2", "SN_0042.b", "aa-bb-cc-dd-ee-ff", long(MaxKeyLength)},
			[]string{"", long(MaxKeyLength + 1), ".hidden", "-flag", "_x", "aa:bb", "a/b", "a+b", "a#b", "a b", "é", "a\x00", "a=b", "a,b"}},
		{"version", func(s string) error { return CheckVersion("version", s) },
			[]string{"1.0.0", "v2", "1.0.0-rc.1+build.5", "2024.1.15", "release-b", "Ünïcode", strings.Repeat("1", MaxVersionLen)},
			[]string{"", "1.0 beta", "1.0\t", "1.0\n", "1.0\x7f", "\xff", strings.Repeat("1", MaxVersionLen+1)}},
		{"tag value", func(s string) error { return CheckTagValue("site", s) },
			[]string{"paris", "a=b", "Zürich", "with space", strings.Repeat("x", MaxTagValue)},
			[]string{"", "a,b", "a\nb", "\xff", strings.Repeat("x", MaxTagValue+1)}},
		{"param value", func(s string) error { return CheckParamValue("list", s) },
			[]string{"a,b", "http://x/?a=b", strings.Repeat("x", MaxParamValue)},
			[]string{"", "a\x00", "\xff", strings.Repeat("x", MaxParamValue+1)}},
	}
	for _, tt := range tests {
		for _, s := range tt.ok {
			if err := tt.check(s); err != nil {
				t.Errorf("%s %.20q: refused: %v", tt.rule, s, err)
			}
		}
		for _, s := range tt.bad {
			err := tt.check(s)
			if ErrorCode(err) != CodeMalformed || !strings.Contains(err.Error(), "is not valid: ") || !strings.Contains(err.Error(), "; use ") {
				t.Errorf("%s %.20q: %v; want malformed, saying why and the rule", tt.rule, s, err)
			}
		}
	}
}

// TestKeyRuleIsKeyPattern checks that the pattern HTML forms use is the
// same rule as CheckKey.
func TestKeyRuleIsKeyPattern(t *testing.T) {
	re := regexp.MustCompile(`^(?:` + KeyPattern + `)$`)
	for _, s := range []string{"a", "Modem", "x.y_z-1", ".a", "-a", "a:b", "", strings.Repeat("a", 64), strings.Repeat("a", 65), "é"} {
		if re.MatchString(s) != (CheckKey("key", s) == nil) {
			t.Errorf("%q: KeyPattern says %v, CheckKey %v", s, re.MatchString(s), CheckKey("key", s))
		}
	}
}

// TestKeyRuleAppliesToTopicsAndUserNames: the same rule decides topics,
// user names and messages.
func TestKeyRuleAppliesToTopicsAndUserNames(t *testing.T) {
	for _, key := range []string{"Modem", "d-1", "-d", "a:b", ".x"} {
		want := CheckKey("key", key) == nil
		_, _, _, err := ParseTopic(Topic("demo", key, KindInform))
		_, _, uerr := ParseUsername(Username("demo", key))
		_, ierr := DecodeInform([]byte(`{"modules":{"` + key + `":"1.0.0"}}`))
		_, rerr := DecodeRequest([]byte(`{"module":"` + key + `"}`))
		if (err == nil) != want || (uerr == nil) != want || (ierr == nil) != want || (rerr == nil) != want {
			t.Errorf("key %q: topic %v, user name %v, inform %v, request %v; want all accepted: %v", key, err, uerr, ierr, rerr, want)
		}
	}
}
