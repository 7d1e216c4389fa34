package api

import (
	"maps"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/otter-ota/otter/internal/ota"

	"github.com/otter-ota/otter/sdk/wire"
)

func TestParseDeviceLine(t *testing.T) {
	tests := []struct {
		line string
		key  string
		tags map[string]string
		skip bool
		ok   bool
	}{
		{line: "d1", key: "d1", tags: map[string]string{}, ok: true},
		{line: "  d1 , site=paris ,ring=beta,, ", key: "d1", tags: map[string]string{"site": "paris", "ring": "beta"}, ok: true},
		{line: "AA-BB-CC-DD-EE-FF,url=a=b", key: "AA-BB-CC-DD-EE-FF", tags: map[string]string{"url": "a=b"}, ok: true},
		{line: "AA:BB:CC:DD:EE:FF", ok: false}, // ':' breaks the HTTP Basic user name
		{line: "", skip: true, ok: true},
		{line: "   \t", skip: true, ok: true},
		{line: "# d1,site=x", skip: true, ok: true},
		{line: "d1,site", ok: false},
		{line: "d1,=x", ok: false},
		{line: "d1,site=", ok: false},
		{line: "d1,a=1,a=2", ok: false},
		{line: ",site=x", ok: false},
		{line: "d 1", ok: false},
		{line: "-d1", ok: false},
		{line: "d1,site=\x01", ok: false},
		{line: strings.Repeat("k", 129), ok: false},
	}
	for _, tt := range tests {
		l, skip, err := parseDeviceLine(tt.line)
		if (err == nil) != tt.ok || skip != tt.skip {
			t.Errorf("parseDeviceLine(%q) = skip %v, err %v; want skip %v, ok %v", tt.line, skip, err, tt.skip, tt.ok)
			continue
		}
		if tt.ok && !tt.skip && (l.key != tt.key || !maps.Equal(l.tags, tt.tags)) {
			t.Errorf("parseDeviceLine(%q) = %q %v, want %q %v", tt.line, l.key, l.tags, tt.key, tt.tags)
		}
		if err != nil && ota.ErrorCode(err) != ota.EINVALID {
			t.Errorf("parseDeviceLine(%q): error code %s, want invalid", tt.line, ota.ErrorCode(err))
		}
	}
}

func TestParseKV(t *testing.T) {
	tests := []struct {
		rule  kvRule
		pairs []string
		want  map[string]string
	}{
		{tagRule, nil, map[string]string{}},
		{tagRule, []string{"site=paris", "ring=beta"}, map[string]string{"site": "paris", "ring": "beta"}},
		{tagRule, []string{"site=a=b"}, map[string]string{"site": "a=b"}},
		{tagRule, []string{"site=a,b"}, nil},
		{paramRule, []string{"list=a,b"}, map[string]string{"list": "a,b"}},
		{tagRule, []string{"site"}, nil},
		{tagRule, []string{"=paris"}, nil},
		{tagRule, []string{"si te=paris"}, nil},
		{tagRule, []string{"site=paris", "site=lyon"}, nil},
		{tagRule, []string{"site=" + strings.Repeat("x", wire.MaxTagValue+1)}, nil},
		{paramRule, []string{"p=" + strings.Repeat("x", wire.MaxTagValue+1)}, map[string]string{"p": strings.Repeat("x", wire.MaxTagValue+1)}},
		{tagRule, []string{"site=\xff"}, nil},
	}
	for _, tt := range tests {
		got, err := tt.rule.parseAll(tt.pairs)
		if tt.want == nil {
			if err == nil {
				t.Errorf("%s %q: accepted as %v", tt.rule.what, tt.pairs, got)
			}
			continue
		}
		if err != nil || !maps.Equal(got, tt.want) {
			t.Errorf("%s %q = %v, %v; want %v", tt.rule.what, tt.pairs, got, err, tt.want)
		}
	}
	many := make([]string, maxTags+1)
	for i := range many {
		many[i] = "t" + strings.Repeat("x", i) + "=v"
	}
	if _, err := tagRule.parseAll(many); err == nil {
		t.Errorf("%d tags accepted", len(many))
	}
}

func TestParseUploadQuery(t *testing.T) {
	q, err := parseUploadQuery(url.Values{
		"product": {"demo"}, "version": {"2.0.0"}, "from": {"1.0.0, 1.1.0", "1.2.0"},
		"param": {"a=1", "b=x,y"}, "verify_required": {"1"}, "sha256": {strings.Repeat("AB", 32)},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := uploadQuery{
		product: "demo", module: "default", version: "2.0.0", from: []string{"1.0.0", "1.1.0", "1.2.0"},
		sha256: strings.Repeat("ab", 32), verifyRequired: true, params: map[string]string{"a": "1", "b": "x,y"},
	}
	if diff := cmp.Diff(want, q, cmp.AllowUnexported(uploadQuery{})); diff != "" {
		t.Fatalf("query (-want +got):\n%s", diff)
	}
}

// FuzzParseDeviceLine checks that no line crashes the import parser and
// that whatever it accepts is valid and survives being written back.
func FuzzParseDeviceLine(f *testing.F) {
	for _, s := range []string{"d1", "d1,site=paris,ring=beta", "# c", "", " d1 ,, a=b=c", "AA:BB,x=\u00e9", "d1,a", "\ufeffd1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		l, skip, err := parseDeviceLine(line)
		if err != nil || skip {
			return
		}
		if checkDeviceKey(l.key) != nil || tagRule.checkMap(l.tags) != nil {
			t.Fatalf("accepted invalid %q: %q %v", line, l.key, l.tags)
		}
		parts := []string{l.key}
		for _, k := range slices.Sorted(maps.Keys(l.tags)) {
			parts = append(parts, k+"="+l.tags[k])
		}
		again, skip, err := parseDeviceLine(strings.Join(parts, ","))
		if err != nil || skip || again.key != l.key || !maps.Equal(again.tags, l.tags) {
			t.Fatalf("%q: written back as %q it parses as %q %v %v", line, parts, again.key, again.tags, err)
		}
	})
}

// FuzzParseKV checks the name=value parser of tags and params the same way.
func FuzzParseKV(f *testing.F) {
	for _, s := range []string{"site=paris", "a=b=c", "=x", "x=", "x", "n=a,b", "n=\x00"} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, s string, param bool) {
		rule := tagRule
		if param {
			rule = paramRule
		}
		name, value, err := rule.parse(s)
		if err != nil {
			if ota.ErrorCode(err) != ota.EINVALID {
				t.Fatalf("%q: error code %s", s, ota.ErrorCode(err))
			}
			return
		}
		if rule.check(name, value) != nil || name+"="+value != s {
			t.Fatalf("%q parsed as %q=%q", s, name, value)
		}
		m, err := rule.parseAll([]string{s})
		if err != nil || m[name] != value || len(m) != 1 {
			t.Fatalf("%q: parseAll = %v, %v", s, m, err)
		}
	})
}
