package store

import (
	"encoding/json"
	"testing"
)

// encodeMap writes what json.Marshal writes, by hand or through it.
func TestEncodeMapIsEncodingJSON(t *testing.T) {
	tests := []map[string]string{
		nil,
		{},
		{"from": "sent", "state": "downloading", "attempt": "1", "percent": "0"},
		{"b": "", "a": "", "": "x"},
		{"code": "install_failed", "state": "failed", "from": "installing", "attempt": "12"},
		{"message": `say "hi"`},
		{"html": "<b> & </b>"},
		{"path": `C:\dir`},
		{"line": "one\ntwo\t"},
		{"utf8": "déjà vu"},
		{"bad": "\xff\xfe"},
		{"sep": "\u2028\u2029"},
		{"del": "\x7f"},
		{"k1": "v", "k2": "v", "k3": "v", "k4": "v", "k5": "v", "k6": "v", "k7": "v", "k8": "v", "k9": "v"},
	}
	for _, m := range tests {
		checkEncodeMap(t, m)
	}
}

func FuzzEncodeMap(f *testing.F) {
	f.Add("from", "sent", "state", "downloading")
	f.Add("a", "<", "b", "\xff")
	f.Add("", "", "Z", `"\`)
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		checkEncodeMap(t, map[string]string{k1: v1, k2: v2})
		checkEncodeMap(t, map[string]string{k1: v1})
	})
}

func checkEncodeMap(t *testing.T, m map[string]string) {
	t.Helper()
	want := "{}"
	if len(m) > 0 {
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		want = string(b)
	}
	if got := encodeMap(m); got != want {
		t.Errorf("encodeMap(%q) = %s, encoding/json writes %s", m, got, want)
	}
}
