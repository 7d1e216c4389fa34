package device

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestBackoffFullJitter(t *testing.T) {
	hi := backoff{base: time.Second, cap: 5 * time.Minute, rand: func() float64 { return 0.999999 }}
	lo := hi
	lo.rand = func() float64 { return 0 }
	tests := []struct {
		attempt int
		ceiling time.Duration
	}{
		{0, time.Second}, {1, 2 * time.Second}, {5, 32 * time.Second},
		{8, 256 * time.Second}, {9, 5 * time.Minute}, {40, 5 * time.Minute}, {1 << 20, 5 * time.Minute},
	}
	for _, tt := range tests {
		if got := hi.delay(tt.attempt); got > tt.ceiling || got < tt.ceiling*99/100 {
			t.Errorf("delay(%d) with rand≈1 = %s, want just under %s", tt.attempt, got, tt.ceiling)
		}
		if got := lo.delay(tt.attempt); got != 0 {
			t.Errorf("delay(%d) with rand=0 = %s, want 0 (full jitter starts at zero)", tt.attempt, got)
		}
	}
}

func TestBackoffHonoursRetryAfter(t *testing.T) {
	b := backoff{base: time.Second, cap: 5 * time.Minute, rand: func() float64 { return 0.5 }}
	err := fmt.Errorf("poll: %w", &RetryAfterError{Status: 429, After: 30 * time.Second})
	if got := b.wait(err, 0); got != 31500*time.Millisecond {
		t.Errorf("wait after Retry-After 30s = %s, want 31.5s", got)
	}
	if got := b.wait(&RetryAfterError{Status: 503}, 3); got != 4*time.Second {
		t.Errorf("wait after a 503 without Retry-After = %s, want the backoff 4s", got)
	}
}

func TestRetryAfterHeader(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := map[string]time.Duration{
		"120":  2 * time.Minute,
		"0":    0,
		"-5":   0,
		"soon": 0,
		"":     0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Hour).Format(http.TimeFormat):       0,
	}
	for v, want := range tests {
		h := http.Header{}
		if v != "" {
			h.Set("Retry-After", v)
		}
		if got := retryAfter(h, now); got != want {
			t.Errorf("Retry-After %q = %s, want %s", v, got, want)
		}
	}
}

func TestParsePublicKey(t *testing.T) {
	pub := testKey.Public().(ed25519.PublicKey)
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	forms := map[string]string{
		"base64":     base64.StdEncoding.EncodeToString(pub),
		"raw base64": base64.RawStdEncoding.EncodeToString(pub),
		"url base64": base64.RawURLEncoding.EncodeToString(pub),
		"hex":        hex.EncodeToString(pub),
		"pem":        string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
		"spaces":     "  " + base64.StdEncoding.EncodeToString(pub) + "\n",
	}
	for name, s := range forms {
		got, err := ParsePublicKey(s)
		if err != nil || !got.Equal(pub) {
			t.Errorf("%s: ParsePublicKey = %x, %v", name, got, err)
		}
	}
	for _, bad := range []string{"", "abc", base64.StdEncoding.EncodeToString(pub[:31]), "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"} {
		if _, err := ParsePublicKey(bad); err == nil {
			t.Errorf("ParsePublicKey(%q) accepted a bad key", bad)
		}
	}
}

func TestStateRemembersRecentJobsOnly(t *testing.T) {
	var st state
	for i := range maxDone + 3 {
		st.finish(doneRecord{Job: itoa(i), Attempt: 1, Outcome: outcomeSucceeded})
	}
	if len(st.Done) != maxDone || st.finished("0", 1) != nil || st.finished(itoa(maxDone+2), 1) == nil {
		t.Errorf("done list = %+v, want the last %d jobs", st.Done, maxDone)
	}
}
