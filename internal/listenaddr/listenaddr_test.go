package listenaddr

import "testing"

func TestNext(t *testing.T) {
	for addr, want := range map[string]string{
		":1883":          ":1884",
		":1884":          ":1885",
		"127.0.0.1:8883": "127.0.0.1:8884",
		"[::1]:1883":     "[::1]:1884",
		":65535":         ":9999",
		":0":             ":9999",
		"nonsense":       ":9999",
	} {
		if got := Next(addr, ":9999"); got != want {
			t.Errorf("Next(%q) = %q, want %q", addr, got, want)
		}
	}
}
