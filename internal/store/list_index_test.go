package store_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

// pages reads every page of a list, limit at a time, and returns the ids.
func pages(t *testing.T, limit int, list func(store.Page) ([]int64, string, error)) []int64 {
	t.Helper()
	var all []int64
	for page := (store.Page{Limit: limit}); ; {
		ids, next, err := list(page)
		must(t, err)
		all = append(all, ids...)
		if next == "" {
			return all
		}
		page.After = next
	}
}

func ids[T any](items []T, id func(T) int64) []int64 {
	out := make([]int64, len(items))
	for i, it := range items {
		out[i] = id(it)
	}
	return out
}

// Filtered lists give, page by page, exactly the rows that match, when the
// matching rows are interleaved with others and when they all lie before
// or after the others: each list pages through its filter's index (as a
// range on PostgreSQL), and an index scan that ended early or ran on would
// show here.
func TestFilteredListsAcrossOwners(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := as("op")
		var tasks []ota.Task
		for _, p := range []string{"a", "b"} {
			must(t, s.CreateProduct(ctx, &ota.Product{Key: p}))
		}
		// Devices of a and b alternate, then a block of b's; every third
		// one is offline.
		var nd []store.NewDevice
		for i := range 60 {
			p := []string{"a", "b"}[i%2]
			if i >= 40 {
				p = "b"
			}
			nd = append(nd, store.NewDevice{Product: p, Key: fmt.Sprintf("k%03d", i), SecretHash: hash("s"),
				Versions: map[string]string{"default": "1.0.0"}})
		}
		devices, err := s.CreateDevices(ctx, nd)
		must(t, err)
		var presence []ota.Presence
		for i, d := range devices {
			presence = append(presence, ota.Presence{DeviceID: d.ID, Online: i%3 != 0, At: time.Now()})
		}
		_, err = s.Apply(as("engine"), ota.ChangeSet{Presence: presence})
		must(t, err)
		// A task per product: a's jobs first, then b's.
		for _, p := range []string{"a", "b"} {
			fw := ota.Firmware{Product: p, Module: "default", Version: "1.1.0", Size: 1, SHA256: fmt.Sprintf("%064d", 1), Signature: "x", BlobKey: "k"}
			must(t, s.CreateFirmware(ctx, &fw))
			task := ota.Task{Product: p, Module: "default", FirmwareID: fw.ID, Version: "1.1.0", Mode: ota.ModePush, State: ota.TaskRunning}
			var jobs []ota.Job
			for _, d := range devices {
				if d.Product == p {
					jobs = append(jobs, ota.Job{DeviceID: d.ID, Device: d.Key, Product: p, Module: "default", State: ota.JobQueued, FromVersion: "1.0.0", Version: "1.1.0"})
				}
			}
			task.Total = int64(len(jobs))
			must(t, s.CreateTask(ctx, &task, jobs))
			tasks = append(tasks, task)
		}
		all, _, err := s.ListJobs(ctx, store.JobFilter{}, store.Page{Limit: store.MaxPageSize})
		must(t, err)
		var changes []ota.JobUpdate
		var events []ota.Event
		for i, j := range all {
			if i%4 == 1 {
				n := j
				n.State, n.UpdatedAt = ota.JobFailed, time.Now().UTC()
				changes = append(changes, ota.JobUpdate{Old: j, New: n})
				all[i] = n
			}
			events = append(events, ota.Event{At: time.Now(), Kind: ota.KindJob, Action: "x", Product: j.Product,
				Device: j.Device, TaskID: j.TaskID, JobID: j.ID})
		}
		_, err = s.Apply(as("engine"), ota.ChangeSet{Jobs: changes, Events: events})
		must(t, err)

		jobIDs := func(keep func(ota.Job) bool) []int64 {
			var out []int64
			for _, j := range all {
				if keep(j) {
					out = append(out, j.ID)
				}
			}
			return out
		}
		for _, task := range tasks {
			for _, states := range [][]ota.JobState{nil, {ota.JobQueued}, {ota.JobFailed}, {ota.JobFailed, ota.JobQueued}} {
				got := pages(t, 7, func(p store.Page) ([]int64, string, error) {
					jobs, next, err := s.ListJobs(ctx, store.JobFilter{TaskID: task.ID, States: states}, p)
					return ids(jobs, func(j ota.Job) int64 { return j.ID }), next, err
				})
				want := jobIDs(func(j ota.Job) bool {
					return j.TaskID == task.ID && (len(states) == 0 || slices.Contains(states, j.State))
				})
				if !slices.Equal(got, want) {
					t.Errorf("task %d, states %v: %v, want %v", task.ID, states, got, want)
				}
			}
		}
		online := true
		for _, f := range []store.DeviceFilter{{Product: "a"}, {Product: "b"}, {Product: "a", Online: &online}, {Product: "b", Online: &online}} {
			got := pages(t, 7, func(p store.Page) ([]int64, string, error) {
				devs, next, err := s.ListDevices(ctx, f, p)
				return ids(devs, func(d ota.Device) int64 { return d.ID }), next, err
			})
			var want []int64
			for i, d := range devices {
				if d.Product == f.Product && (f.Online == nil || *f.Online == (i%3 != 0)) {
					want = append(want, d.ID)
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("devices %+v: %v, want %v", f, got, want)
			}
		}
		every, _, err := s.ListEvents(ctx, store.EventFilter{}, store.Page{Limit: store.MaxPageSize})
		must(t, err)
		for _, f := range []store.EventFilter{{TaskID: tasks[0].ID}, {TaskID: tasks[1].ID}, {Kind: ota.KindJob},
			{Kind: ota.KindTask}, {Product: "b", Device: "k001"}, {Product: "a", Device: "k000"}, {JobID: all[3].ID},
			{Kind: ota.KindJob, TaskID: tasks[1].ID}} {
			got := pages(t, 7, func(p store.Page) ([]int64, string, error) {
				evs, next, err := s.ListEvents(ctx, f, p)
				return ids(evs, func(e ota.Event) int64 { return e.ID }), next, err
			})
			var want []int64
			for _, e := range every {
				if (f.TaskID == 0 || e.TaskID == f.TaskID) && (f.Kind == "" || e.Kind == f.Kind) &&
					(f.Device == "" || e.Product == f.Product && e.Device == f.Device) && (f.JobID == 0 || e.JobID == f.JobID) {
					want = append(want, e.ID)
				}
			}
			if len(want) == 0 || !slices.Equal(got, want) {
				t.Errorf("events %+v: %v, want %v (not empty)", f, got, want)
			}
		}
	})
}
