package devicehttp

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzParseToken feeds arbitrary download queries to the token parser: it
// must never panic, must refuse with ErrNoToken, and whatever it accepts
// must survive a round trip through a signed URL.
func FuzzParseToken(f *testing.F) {
	key := make([]byte, KeySize)
	s, err := NewURLSigner("http://127.0.0.1:8080", key, time.Hour, nil)
	if err != nil {
		f.Fatal(err)
	}
	valid := s.DownloadURL("demo", "d1", 7)
	f.Add(int64(7), valid[strings.IndexByte(valid, '?')+1:])
	f.Add(int64(1), "d=a/b&e=1&s=")
	f.Add(int64(1), "d=a/b&e=99999999999999999999&s=AAAA")
	f.Add(int64(0), "d=%zz")
	f.Add(int64(-3), "d=a/b/c&e=1&e=2&s=x;y")
	f.Fuzz(func(t *testing.T, id int64, query string) {
		g, sig, err := parseToken(id, query)
		if err != nil {
			if !errors.Is(err, ErrNoToken) {
				t.Fatalf("error %v is not ErrNoToken", err)
			}
			return
		}
		if len(sig) != 32 || g.FirmwareID != id || g.Expires.Unix() <= 0 {
			t.Fatalf("accepted %q as %+v with a %d-byte signature", query, g, len(sig))
		}
		signed := s.DownloadURL(g.Product, g.Device, id)
		if _, err := s.Verify(id, signed[strings.IndexByte(signed, '?')+1:]); err != nil {
			t.Fatalf("a URL signed for %+v does not verify: %v", g, err)
		}
	})
}
