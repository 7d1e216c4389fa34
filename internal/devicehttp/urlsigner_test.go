package devicehttp_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/devicehttp"
	"github.com/otter-ota/otter/internal/store/storetest"
)

var testKey = bytes.Repeat([]byte{7}, devicehttp.KeySize)

// splitURL returns the firmware id and the query of a download URL.
func splitURL(t *testing.T, raw string) (int64, url.Values) {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	id, err := strconv.ParseInt(strings.TrimPrefix(u.Path, "/dl/"), 10, 64)
	if err != nil {
		t.Fatalf("URL %s: %v", raw, err)
	}
	return id, u.Query()
}

func TestURLSignAndVerify(t *testing.T) {
	start := time.Date(2026, 3, 1, 12, 3, 4, 0, time.UTC)
	clock := storetest.NewClock(start)
	s, err := devicehttp.NewURLSigner("https://otter.example.com:8443/", testKey, time.Hour, clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	raw := s.DownloadURL("demo", "d1", 42)
	if !strings.HasPrefix(raw, "https://otter.example.com:8443/dl/42?d=demo/d1&e=") {
		t.Fatalf("URL %s", raw)
	}
	id, q := splitURL(t, raw)
	other, _ := devicehttp.NewURLSigner("https://otter.example.com:8443", bytes.Repeat([]byte{8}, devicehttp.KeySize), time.Hour, clock.Now)
	_, otherQ := splitURL(t, other.DownloadURL("demo", "d1", 42))
	with := func(name, value string) string {
		c := url.Values{}
		for k, v := range q {
			c[k] = append([]string(nil), v...)
		}
		if value == "" {
			c.Del(name)
		} else {
			c.Set(name, value)
		}
		return c.Encode()
	}
	sig := q.Get("s")
	flipped := "A" + sig[1:]
	if sig[0] == 'A' {
		flipped = "B" + sig[1:]
	}
	exp, _ := strconv.ParseInt(q.Get("e"), 10, 64)
	tests := []struct {
		name  string
		id    int64
		query string
		at    time.Time
		want  error
	}{
		{"valid", id, q.Encode(), start, nil},
		{"valid just before expiry", id, q.Encode(), time.Unix(exp, 0).Add(-time.Second), nil},
		{"expired", id, q.Encode(), time.Unix(exp, 0), devicehttp.ErrBadToken},
		{"other firmware", id + 1, q.Encode(), start, devicehttp.ErrBadToken},
		{"other product", id, with("d", "demo2/d1"), start, devicehttp.ErrBadToken},
		{"other device", id, with("d", "demo/d2"), start, devicehttp.ErrBadToken},
		{"later expiry", id, with("e", strconv.FormatInt(exp+600, 10)), start, devicehttp.ErrBadToken},
		{"flipped signature", id, with("s", flipped), start, devicehttp.ErrBadToken},
		{"signed with another key", id, with("s", otherQ.Get("s")), start, devicehttp.ErrBadToken},
		{"no query", id, "", start, devicehttp.ErrNoToken},
		{"no d", id, with("d", ""), start, devicehttp.ErrNoToken},
		{"no e", id, with("e", ""), start, devicehttp.ErrNoToken},
		{"no s", id, with("s", ""), start, devicehttp.ErrNoToken},
		{"d twice", id, q.Encode() + "&d=demo/d1", start, devicehttp.ErrNoToken},
		{"d without device", id, with("d", "demo"), start, devicehttp.ErrNoToken},
		{"d with bad key", id, with("d", "demo/d 1"), start, devicehttp.ErrNoToken},
		{"e not a number", id, with("e", "soon"), start, devicehttp.ErrNoToken},
		{"e negative", id, with("e", "-5"), start, devicehttp.ErrNoToken},
		{"s not base64url", id, with("s", "!!!"), start, devicehttp.ErrNoToken},
		{"s too short", id, with("s", base64.RawURLEncoding.EncodeToString([]byte("short"))), start, devicehttp.ErrNoToken},
		{"semicolon query", id, q.Encode() + ";x=1", start, devicehttp.ErrNoToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock.Set(tt.at)
			g, err := s.Verify(tt.id, tt.query)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Verify: %v, want %v", err, tt.want)
			}
			if err == nil && (g.Product != "demo" || g.Device != "d1" || g.FirmwareID != 42 || g.Expires.Unix() != exp) {
				t.Fatalf("grant %+v", g)
			}
		})
	}
}

// An expiry is never sooner than the TTL and is rounded up to ten
// minutes, so URLs made within one window are identical.
func TestURLExpiryRounding(t *testing.T) {
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		ttl    time.Duration
		offset time.Duration
		want   time.Time
	}{
		{time.Hour, 0, base.Add(time.Hour)},
		{time.Hour, time.Second, base.Add(70 * time.Minute)},
		{time.Hour, 9*time.Minute + 59*time.Second, base.Add(70 * time.Minute)},
		{time.Hour, 10 * time.Minute, base.Add(70 * time.Minute)},
		{time.Hour, 10*time.Minute + time.Millisecond, base.Add(80 * time.Minute)},
		{24 * time.Hour, 3 * time.Minute, base.Add(24*time.Hour + 10*time.Minute)},
		{2 * time.Minute, 30 * time.Second, base.Add(4 * time.Minute)}, // step is the TTL when shorter
		{0, 0, base.Add(devicehttp.DefaultURLTTL)},
	}
	for _, tt := range tests {
		s, err := devicehttp.NewURLSigner("http://10.0.0.5:8080", testKey, tt.ttl, storetest.NewClock(base.Add(tt.offset)).Now)
		if err != nil {
			t.Fatal(err)
		}
		_, q := splitURL(t, s.DownloadURL("demo", "d1", 1))
		got, _ := strconv.ParseInt(q.Get("e"), 10, 64)
		if got != tt.want.Unix() {
			t.Errorf("ttl %s at +%s: expiry %s, want %s", tt.ttl, tt.offset, time.Unix(got, 0).UTC(), tt.want)
		}
		ttl := tt.ttl
		if ttl == 0 {
			ttl = devicehttp.DefaultURLTTL
		}
		if time.Unix(got, 0).Before(base.Add(tt.offset + ttl)) {
			t.Errorf("ttl %s at +%s: expiry %s is sooner than the TTL", tt.ttl, tt.offset, time.Unix(got, 0).UTC())
		}
	}
}

func TestNewURLSignerRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name string
		base string
		key  []byte
		ttl  time.Duration
	}{
		{"relative base", "10.0.0.5:8080", testKey, 0},
		{"ftp base", "ftp://10.0.0.5", testKey, 0},
		{"base with query", "http://10.0.0.5/?x=1", testKey, 0},
		{"short key", "http://10.0.0.5", testKey[:16], 0},
		{"negative ttl", "http://10.0.0.5", testKey, -time.Second},
	}
	for _, tt := range tests {
		if _, err := devicehttp.NewURLSigner(tt.base, tt.key, tt.ttl, nil); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

// Replicas starting together must agree on one key.
func TestLoadKeyIsSharedByRacingReplicas(t *testing.T) {
	st := storetest.Open(t)
	ctx := context.Background()
	keys := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, err := devicehttp.LoadKey(ctx, st)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for i, k := range keys {
		if len(k) != devicehttp.KeySize || !bytes.Equal(k, keys[0]) {
			t.Fatalf("replica %d got key %x, replica 0 %x", i, k, keys[0])
		}
	}
	stored, err := st.Setting(ctx, devicehttp.KeySetting)
	if err != nil || stored != base64.StdEncoding.EncodeToString(keys[0]) {
		t.Fatalf("stored setting %q, %v", stored, err)
	}
}

func TestLoadKeyRefusesADamagedSetting(t *testing.T) {
	st := storetest.Open(t)
	ctx := context.Background()
	if _, err := st.InitSetting(ctx, devicehttp.KeySetting, "not a key"); err != nil {
		t.Fatal(err)
	}
	_, err := devicehttp.LoadKey(ctx, st)
	if err == nil || !strings.Contains(err.Error(), devicehttp.KeySetting) {
		t.Fatalf("LoadKey over a damaged setting: %v, want an error naming the setting", err)
	}
}
