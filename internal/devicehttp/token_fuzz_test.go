package devicehttp

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/url"
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
	f.Add(int64(1), "%64=a/b&e=1&s=x&d")
	f.Add(int64(1), "d=a/b&&e=1&s=%41+&x=%zz")
	f.Fuzz(func(t *testing.T, id int64, query string) {
		checkTokenParams(t, query)
		var sig [32]byte
		g, err := parseToken(id, query, &sig)
		if err != nil {
			if !errors.Is(err, ErrNoToken) {
				t.Fatalf("error %v is not ErrNoToken", err)
			}
			return
		}
		if g.FirmwareID != id || g.Expires.Unix() <= 0 {
			t.Fatalf("accepted %q as %+v", query, g)
		}
		q, _ := url.ParseQuery(query) // checkTokenParams: it reads the same
		if want, err := base64.RawURLEncoding.DecodeString(q.Get("s")); err != nil || !bytes.Equal(sig[:], want) {
			t.Fatalf("accepted %q with signature %x, DecodeString reads %x (%v)", query, sig, want, err)
		}
		signed := s.DownloadURL(g.Product, g.Device, id)
		if _, err := s.Verify(id, signed[strings.IndexByte(signed, '?')+1:]); err != nil {
			t.Fatalf("a URL signed for %+v does not verify: %v", g, err)
		}
	})
}

// checkTokenParams compares tokenParams with url.ParseQuery: the same
// queries refused, the same values read.
func checkTokenParams(t *testing.T, query string) {
	t.Helper()
	got, err := tokenParams(query)
	q, qerr := url.ParseQuery(query)
	if qerr != nil {
		if err == nil {
			t.Fatalf("%q: read %q, but url.ParseQuery refuses it: %v", query, got, qerr)
		}
		return
	}
	for i, name := range tokenNames {
		if len(q[name]) != 1 {
			if err == nil {
				t.Fatalf("%q: read %q though %q appears %d times", query, got, name, len(q[name]))
			}
			return
		}
		if err == nil && got[i] != q[name][0] {
			t.Fatalf("%q: read %q = %q, url.ParseQuery %q", query, name, got[i], q[name][0])
		}
	}
	if err != nil {
		t.Fatalf("%q: refused (%v), url.ParseQuery reads %v", query, err, q)
	}
}
