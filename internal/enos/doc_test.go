package enos_test

import (
	"bytes"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"testing"

	"github.com/otter-ota/otter/internal/enos"
)

// The JSON examples of docs/protocol-enos.md have exactly the fields this
// codec writes.
func TestDocExamples(t *testing.T) {
	doc, err := os.ReadFile("../../docs/protocol-enos.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```json\n(.*?)```").FindAllSubmatch(doc, -1)
	if len(blocks) < 2 {
		t.Fatalf("%d JSON examples in protocol-enos.md, want the upgrade and the getversion reply", len(blocks))
	}
	keys := func(b []byte) []string {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("example %s: %v", b, err)
		}
		var out []string
		for k, v := range m {
			out = append(out, k)
			if k == "params" {
				out = append(out, keysOf(t, v)...)
			}
			if k == "data" && bytes.HasPrefix(v, []byte("[")) {
				var list []json.RawMessage
				_ = json.Unmarshal(v, &list)
				out = append(out, keysOf(t, list[0])...)
			}
		}
		slices.Sort(out)
		return out
	}
	f := enos.Firmware{Version: "1", Sign: "a", SignMethod: "sha256", FileURL: "u", FileSize: 1}
	want := map[string][]string{
		"upgrade":    keys(enos.Upgrade("42", f)),
		"getversion": keys(enos.Reply(json.RawMessage(`"3"`), 200, []enos.Firmware{f}, "")),
	}
	for _, b := range blocks {
		got := keys(b[1])
		name := "getversion"
		if slices.Contains(got, "method") {
			name = "upgrade"
		}
		if !slices.Equal(got, want[name]) {
			t.Errorf("the %s example has fields %v, the codec writes %v", name, got, want[name])
		}
	}
}

func keysOf(t *testing.T, b []byte) []string {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	var out []string
	for k := range m {
		out = append(out, "."+k)
	}
	return out
}
