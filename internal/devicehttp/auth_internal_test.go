package devicehttp

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/credential"
	"github.com/otter-ota/otter/internal/ota"
)

// slowCreds answers Credentials with the hash of secret; when gate is set,
// a lookup that has read the secret says so on read and waits for gate (a
// read in flight while the secret changes).
type slowCreds struct {
	mu     sync.Mutex
	secret string
	read   chan struct{}
	gate   chan struct{}
}

func (s *slowCreds) Credentials(context.Context, string, string) (ota.DeviceCredentials, error) {
	s.mu.Lock()
	secret, read, gate := s.secret, s.read, s.gate
	s.mu.Unlock()
	if gate != nil {
		read <- struct{}{}
		<-gate
	}
	return ota.DeviceCredentials{DeviceID: 1, SecretHash: credential.Hash(secret)}, nil
}

func (s *slowCreds) GetFirmware(context.Context, int64) (ota.Firmware, error) {
	return ota.Firmware{}, ota.Errorf(ota.ENOTFOUND, "none")
}

// A login that read the old secret before a rotation and returns after it
// must not leave the old secret cached: the new one works at once, the old
// one no longer does.
func TestCredentialCacheNeverKeepsALookupOlderThanAChange(t *testing.T) {
	st := &slowCreds{secret: "old", read: make(chan struct{}), gate: make(chan struct{})}
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	c := newCredCache(st, time.Hour, 100, func() time.Time { return now }, func(bool) {})
	ctx := context.Background()
	done := make(chan error, 1)
	go func() { _, err := c.authenticate(ctx, "p", "d", "old"); done <- err }()
	<-st.read // the lookup has read the old secret; now rotate
	st.mu.Lock()
	st.secret = "new"
	gate := st.gate
	st.gate = nil
	st.mu.Unlock()
	c.forget("p", "d")
	close(gate)
	if err := <-done; err != nil {
		t.Fatalf("the login in flight during the rotation: %v", err)
	}
	if _, err := c.authenticate(ctx, "p", "d", "new"); err != nil {
		t.Errorf("new secret after the rotation: %v", err)
	}
	if _, err := c.authenticate(ctx, "p", "d", "old"); err == nil {
		t.Error("old secret after the rotation: accepted")
	}
}
