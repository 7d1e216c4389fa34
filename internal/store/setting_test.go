package store_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

func TestSettings(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		_, err := s.Setting(ctx, "url_key")
		wantCode(t, err, ota.ENOTFOUND)
		_, err = s.InitSetting(ctx, "", "v")
		wantCode(t, err, ota.EINVALID)

		// Racing replicas: every caller gets the value of the one that won.
		const n = 12
		got := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				v, err := s.InitSetting(ctx, "url_key", fmt.Sprint("value-", i))
				if err != nil {
					t.Error(err)
				}
				got[i] = v
			})
		}
		wg.Wait()
		stored, err := s.Setting(ctx, "url_key")
		must(t, err)
		for i, v := range got {
			if v != stored {
				t.Errorf("caller %d got %q, stored %q", i, v, stored)
			}
		}
		events, _, err := s.ListEvents(ctx, store.EventFilter{Kind: "setting"}, store.Page{})
		must(t, err)
		if len(events) != 1 || events[0].Action != "initialized" {
			t.Errorf("events = %+v, want one setting initialized", events)
		}
	})
}
