package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/internal/store/storetest"
)

func TestEventFilters(t *testing.T) {
	runURL(t, func(t *testing.T, url string) {
		c := storetest.NewClock(time.Date(2030, 5, 1, 12, 0, 0, 0, time.UTC))
		s := storetest.OpenURL(t, url, store.WithClock(c.Now))
		ctx := context.Background()
		createProduct(t, s, "p") // 12:00, by admin
		c.Add(time.Hour)
		createProduct(t, s, "q") // 13:00
		c.Add(time.Hour)
		createDevices(t, s, newDevices("p", "d", 2)) // 14:00
		c.Add(time.Hour)
		f := newFirmware("p", "1.0")
		must(t, s.CreateFirmware(as("ivan"), &f)) // 15:00
		_, err := rawDB(t, url).ExecContext(ctx, `INSERT INTO events (at, actor, kind, action, task_id, job_id)
			VALUES ($1, 'engine', 'job', 'failed', 7, 70)`, c.Now().Add(time.Minute))
		must(t, err)

		at := func(h int) time.Time { return time.Date(2030, 5, 1, h, 0, 0, 0, time.UTC) }
		tests := []struct {
			name string
			f    store.EventFilter
			want []string // kind/action/product/device, newest first
		}{
			{"all", store.EventFilter{}, []string{"job/failed//", "firmware/created/p/", "device/created/p/d-00001",
				"device/created/p/d-00000", "product/created/q/", "product/created/p/"}},
			{"kind", store.EventFilter{Kind: ota.KindProduct}, []string{"product/created/q/", "product/created/p/"}},
			{"actor", store.EventFilter{Actor: "ivan"}, []string{"firmware/created/p/"}},
			{"product", store.EventFilter{Product: "q"}, []string{"product/created/q/"}},
			{"device", store.EventFilter{Product: "p", Device: "d-00000"}, []string{"device/created/p/d-00000"}},
			{"firmware", store.EventFilter{Firmware: f.ID}, []string{"firmware/created/p/"}},
			{"task", store.EventFilter{TaskID: 7}, []string{"job/failed//"}},
			{"job", store.EventFilter{JobID: 70}, []string{"job/failed//"}},
			{"other job", store.EventFilter{JobID: 71}, nil},
			{"since", store.EventFilter{Since: at(14), Kind: ota.KindDevice},
				[]string{"device/created/p/d-00001", "device/created/p/d-00000"}},
			{"until", store.EventFilter{Until: at(13)}, []string{"product/created/p/"}},
			{"since until", store.EventFilter{Since: at(13), Until: at(14)}, []string{"product/created/q/"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				all, _ := collect(t, 1, func(p store.Page) ([]ota.Event, string, error) {
					return s.ListEvents(ctx, tt.f, p)
				})
				var got []string
				for _, e := range all {
					got = append(got, e.Kind+"/"+e.Action+"/"+e.Product+"/"+e.Device)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("ListEvents (-want +got):\n%s", diff)
				}
			})
		}
		events, _, err := s.ListEvents(ctx, store.EventFilter{Kind: ota.KindProduct}, store.Page{})
		must(t, err)
		if !events[1].At.Equal(at(12)) || events[1].At.Location() != time.UTC || events[1].Actor != "admin" {
			t.Errorf("first event at %v by %q, want 12:00 UTC by admin", events[1].At, events[1].Actor)
		}
	})
}
