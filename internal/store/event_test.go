package store_test

import (
	"context"
	"fmt"
	"slices"
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

// A device's events are listed under its key across deletions: its job
// events are found through its jobs, not the index on (product, device),
// so the jobs of a device deleted (by the API or in a change set) and
// created again under the same key stay in its history, in order, page by
// page, with and without further filters.
func TestDeviceEventsAcrossDeletions(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := as("op")
		must(t, s.CreateProduct(ctx, &ota.Product{Key: "p"}))
		var fw []ota.Firmware
		for _, v := range []string{"1.1.0", "1.2.0", "1.3.0"} {
			f := ota.Firmware{Product: "p", Module: "default", Version: v, Size: 1, SHA256: fmt.Sprintf("%064d", 1), Signature: "x", BlobKey: "k"}
			must(t, s.CreateFirmware(ctx, &f))
			fw = append(fw, f)
		}
		// Three lives of device k, beside device other; each life gets a
		// job with an event, and the first two end deleted.
		for life, f := range fw {
			devs, err := s.CreateDevices(ctx, []store.NewDevice{
				{Product: "p", Key: "k", SecretHash: hash("s"), Versions: map[string]string{"default": "1.0.0"}},
				{Product: "p", Key: fmt.Sprintf("other%d", life), SecretHash: hash("s"), Versions: map[string]string{"default": "1.0.0"}}})
			must(t, err)
			task := ota.Task{Product: "p", Module: "default", FirmwareID: f.ID, Version: f.Version, Mode: ota.ModePush, State: ota.TaskRunning, Total: 2}
			var jobs []ota.Job
			for _, d := range devs {
				jobs = append(jobs, ota.Job{DeviceID: d.ID, Device: d.Key, Product: "p", Module: "default", State: ota.JobQueued, FromVersion: "1.0.0", Version: f.Version})
			}
			must(t, s.CreateTask(ctx, &task, jobs))
			got, _, err := s.ListJobs(ctx, store.JobFilter{TaskID: task.ID}, store.Page{Limit: 10})
			must(t, err)
			var events []ota.Event
			for _, j := range got {
				events = append(events, ota.Event{At: time.Now(), Kind: ota.KindJob, Action: "x", Product: "p", Device: j.Device, TaskID: j.TaskID, JobID: j.ID})
			}
			_, err = s.Apply(as("engine"), ota.ChangeSet{Events: events})
			must(t, err)
			switch life {
			case 0:
				must(t, s.DeleteDevice(ctx, "p", "k"))
			case 1:
				_, err = s.Apply(as("engine"), ota.ChangeSet{DeleteDevices: []int64{devs[0].ID}})
				must(t, err)
			}
		}
		every, _, err := s.ListEvents(ctx, store.EventFilter{}, store.Page{Limit: store.MaxPageSize})
		must(t, err)
		for _, f := range []store.EventFilter{{Product: "p", Device: "k"}, {Product: "p", Device: "k", Kind: ota.KindJob},
			{Product: "p", Device: "k", Kind: ota.KindDevice}, {Product: "p", Device: "other1"}, {Product: "p", Device: "k", Actor: "engine"}} {
			var want []int64
			for _, e := range every {
				if e.Product == f.Product && e.Device == f.Device && (f.Kind == "" || e.Kind == f.Kind) && (f.Actor == "" || e.Actor == f.Actor) {
					want = append(want, e.ID)
				}
			}
			for _, limit := range []int{1, 2, 50} {
				got := pages(t, limit, func(p store.Page) ([]int64, string, error) {
					evs, next, err := s.ListEvents(ctx, f, p)
					return ids(evs, func(e ota.Event) int64 { return e.ID }), next, err
				})
				if len(want) == 0 || !slices.Equal(got, want) {
					t.Errorf("events %+v, pages of %d: %v, want %v (not empty)", f, limit, got, want)
				}
			}
		}
	})
}
