package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

// TestConcurrentWrites runs many writers and readers at once: none may fail
// (on SQLite, no "database is locked"), and every write must be kept.
func TestConcurrentWrites(t *testing.T) {
	const writers, perWriter = 24, 15
	run(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		createProduct(t, s, "p")
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range perWriter {
					if err := concurrentStep(ctx, s, w, i); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		devs, _, err := s.ListDevices(ctx, store.DeviceFilter{Product: "p"}, store.Page{Limit: store.MaxPageSize})
		must(t, err)
		tokens, err := s.CountTokens(ctx)
		must(t, err)
		if len(devs) != writers*perWriter || tokens != writers*perWriter {
			t.Errorf("%d devices and %d tokens, want %d of each", len(devs), tokens, writers*perWriter)
		}
	})
}

// concurrentStep creates one device and one token, and reads both back.
func concurrentStep(ctx context.Context, s store.Store, w, i int) error {
	key := fmt.Sprintf("w%02d-%03d", w, i)
	devs := []store.NewDevice{{Product: "p", Key: key, SecretHash: hash(key), Tags: map[string]string{"w": fmt.Sprint(w)}}}
	if _, err := s.CreateDevices(ctx, devs); err != nil {
		return fmt.Errorf("create device %s: %w", key, err)
	}
	tok := ota.Token{Name: key, Role: ota.RoleViewer}
	if err := s.CreateToken(ctx, &tok, hash("token-"+key)); err != nil {
		return fmt.Errorf("create token %s: %w", key, err)
	}
	if _, err := s.TokenByHash(ctx, hash("token-"+key)); err != nil {
		return fmt.Errorf("find token %s: %w", key, err)
	}
	if _, _, err := s.ListDevices(ctx, store.DeviceFilter{Tags: map[string]string{"w": fmt.Sprint(w)}}, store.Page{}); err != nil {
		return fmt.Errorf("list devices: %w", err)
	}
	return nil
}
