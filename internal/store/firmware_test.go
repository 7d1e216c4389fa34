package store_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/internal/store/storetest"
)

func newFirmware(product, version string) ota.Firmware {
	sum := sha256.Sum256([]byte(product + version))
	return ota.Firmware{Product: product, Module: "default", Version: version, Size: 1 << 20,
		SHA256: hex.EncodeToString(sum[:]), Signature: "c2ln", BlobKey: product + "/" + version}
}

// rawDB opens the database at url without the store, to set up rows that
// no store method writes yet (tasks).
func rawDB(t *testing.T, url string) *sql.DB {
	t.Helper()
	driver, dsn := "pgx", url
	if path, ok := strings.CutPrefix(url, "sqlite:"); ok {
		driver, dsn = "sqlite", path+"?_pragma=busy_timeout(10000)&_time_format=sqlite"
	}
	db, err := sql.Open(driver, dsn)
	must(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func TestFirmwareCreateGet(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		createProduct(t, s, "p")
		f := newFirmware("p", "2.0.0")
		f.Module = ""
		f.FromVersions = []string{"1.0.0", "1.1.0"}
		f.Params = map[string]string{"reboot": "soft"}
		f.Description = "fixes the modem"
		f.VerifyRequired = true
		f.AllowDowngrade = true
		must(t, s.CreateFirmware(as("frank"), &f))
		if f.ID == 0 || f.CreatedAt.IsZero() || f.Module != ota.DefaultModule {
			t.Fatalf("CreateFirmware did not assign id, time and module: %+v", f)
		}
		got, err := s.GetFirmware(ctx, f.ID)
		must(t, err)
		if diff := cmp.Diff(f, got); diff != "" {
			t.Errorf("GetFirmware (-want +got):\n%s", diff)
		}
		plain := newFirmware("p", "2.1.0")
		must(t, s.CreateFirmware(ctx, &plain))
		got, err = s.GetFirmware(ctx, plain.ID)
		must(t, err)
		if diff := cmp.Diff(plain, got); diff != "" || got.FromVersions == nil || got.Params == nil {
			t.Errorf("firmware without lists: from %v params %v (-want +got):\n%s", got.FromVersions, got.Params, diff)
		}
		want := ota.Event{Actor: "frank", Kind: ota.KindFirmware, Action: "created", Product: "p", FirmwareID: f.ID,
			Data: map[string]string{"module": "default", "version": "2.0.0"}}
		events, _, err := s.ListEvents(ctx, store.EventFilter{Firmware: f.ID}, store.Page{})
		must(t, err)
		if diff := cmp.Diff([]ota.Event{want}, events, ignoreEventIDAt); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		_, err = s.GetFirmware(ctx, 999999)
		wantCode(t, err, ota.ENOTFOUND)
	})
}

func TestFirmwareCreateRefused(t *testing.T) {
	tests := []struct {
		name string
		edit func(f *ota.Firmware)
		code string
	}{
		{"same version", func(f *ota.Firmware) { f.Version = "1.0.0" }, ota.ECONFLICT},
		{"unknown product", func(f *ota.Firmware) { f.Product = "nope" }, ota.ENOTFOUND},
		{"no version", func(f *ota.Firmware) { f.Version = " " }, ota.EINVALID},
		{"bad hash", func(f *ota.Firmware) { f.SHA256 = "ABC" }, ota.EINVALID},
		{"negative size", func(f *ota.Firmware) { f.Size = -1 }, ota.EINVALID},
		{"no blob", func(f *ota.Firmware) { f.BlobKey = "" }, ota.EINVALID},
		{"empty from version", func(f *ota.Firmware) { f.FromVersions = []string{""} }, ota.EINVALID},
	}
	run(t, func(t *testing.T, s store.Store) {
		createProduct(t, s, "p")
		f := newFirmware("p", "1.0.0")
		must(t, s.CreateFirmware(context.Background(), &f))
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				f := newFirmware("p", "9.9.9")
				tt.edit(&f)
				wantCode(t, s.CreateFirmware(context.Background(), &f), tt.code)
			})
		}
		list, _, err := s.ListFirmware(context.Background(), store.FirmwareFilter{}, store.Page{})
		must(t, err)
		if len(list) != 1 {
			t.Errorf("%d firmware stored, want 1", len(list))
		}
	})
}

func TestFirmwareList(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		createProduct(t, s, "p")
		createProduct(t, s, "q")
		var want []string
		for _, v := range []string{"1", "2", "3", "4", "5"} {
			f := newFirmware("p", v)
			must(t, s.CreateFirmware(ctx, &f))
			want = append(want, "p/default/"+v)
		}
		modem := newFirmware("p", "7")
		modem.Module = "modem"
		must(t, s.CreateFirmware(ctx, &modem))
		other := newFirmware("q", "1")
		must(t, s.CreateFirmware(ctx, &other))
		tests := []struct {
			f    store.FirmwareFilter
			want []string
		}{
			{store.FirmwareFilter{Product: "p", Module: "default"}, want},
			{store.FirmwareFilter{Module: "modem"}, []string{"p/modem/7"}},
			{store.FirmwareFilter{Product: "q"}, []string{"q/default/1"}},
			{store.FirmwareFilter{}, append(want, "p/modem/7", "q/default/1")},
		}
		for _, tt := range tests {
			all, _ := collect(t, 2, func(p store.Page) ([]ota.Firmware, string, error) {
				return s.ListFirmware(ctx, tt.f, p)
			})
			var got []string
			for _, f := range all {
				got = append(got, f.Product+"/"+f.Module+"/"+f.Version)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ListFirmware(%+v) (-want +got):\n%s", tt.f, diff)
			}
		}
		_, _, err := s.ListFirmware(ctx, store.FirmwareFilter{}, store.Page{After: "%%%"})
		wantCode(t, err, ota.EINVALID)
	})
}

func TestFirmwareDelete(t *testing.T) {
	runURL(t, func(t *testing.T, url string) {
		s := storetest.OpenURL(t, url)
		ctx := context.Background()
		createProduct(t, s, "p")
		used, unused := newFirmware("p", "1.0"), newFirmware("p", "2.0")
		must(t, s.CreateFirmware(ctx, &used))
		must(t, s.CreateFirmware(ctx, &unused))
		now := time.Now().UTC()
		_, err := rawDB(t, url).ExecContext(ctx, `INSERT INTO tasks (product, module, firmware_id, version, mode,
			state, created_at, updated_at) VALUES ('p', 'default', $1, '1.0', 'push', 'running', $2, $2)`, used.ID, now)
		must(t, err)

		err = s.DeleteFirmware(ctx, used.ID)
		wantCode(t, err, ota.ECONFLICT)
		if !strings.Contains(err.Error(), "used by 1 task") {
			t.Errorf("message %q does not say a task uses it", err)
		}
		must(t, s.DeleteFirmware(as("gina"), unused.ID))
		_, err = s.GetFirmware(ctx, unused.ID)
		wantCode(t, err, ota.ENOTFOUND)
		wantCode(t, s.DeleteFirmware(ctx, unused.ID), ota.ENOTFOUND)
		want := ota.Event{Actor: "gina", Kind: ota.KindFirmware, Action: "deleted", Product: "p", FirmwareID: unused.ID,
			Data: map[string]string{"module": "default", "version": "2.0", "sha256": unused.SHA256}}
		if diff := cmp.Diff(want, lastEvent(t, s), ignoreEventIDAt); diff != "" {
			t.Errorf("event (-want +got):\n%s", diff)
		}
	})
}

// Lifecycle: deprecate, then delete once no unfinished task uses it; the
// row stays (status deleted) for the tasks that used it.
func TestFirmwareLifecycle(t *testing.T) {
	runURL(t, func(t *testing.T, url string) {
		s := storetest.OpenURL(t, url)
		ctx := context.Background()
		createProduct(t, s, "p")
		fw := newFirmware("p", "1.0")
		must(t, s.CreateFirmware(ctx, &fw))
		if fw.Status != ota.FirmwareActive {
			t.Errorf("new firmware is %q", fw.Status)
		}
		now := time.Now().UTC()
		_, err := rawDB(t, url).ExecContext(ctx, `INSERT INTO tasks (product, module, firmware_id, version, mode,
			state, created_at, updated_at) VALUES ('p', 'default', $1, '1.0', 'push', 'paused', $2, $2)`, fw.ID, now)
		must(t, err)

		got, err := s.DeprecateFirmware(as("gina"), fw.ID)
		if err != nil || got.Status != ota.FirmwareDeprecated {
			t.Fatalf("deprecate: %v %+v", err, got)
		}
		if e := lastEvent(t, s); e.Action != "deprecated" || e.Actor != "gina" || e.FirmwareID != fw.ID {
			t.Errorf("deprecate event %+v", e)
		}
		wantCode(t, func() error { _, err := s.DeprecateFirmware(ctx, fw.ID); return err }(), ota.ECONFLICT)

		err = s.DeleteFirmware(ctx, fw.ID)
		wantCode(t, err, ota.ECONFLICT)
		if want := "is used by 1 task that is not finished (scheduled, running or paused): cancel or wait for it first"; !strings.Contains(err.Error(), want) {
			t.Errorf("message %q, want it to say %q", err, want)
		}
		_, err = rawDB(t, url).ExecContext(ctx, `UPDATE tasks SET state = 'completed' WHERE firmware_id = $1`, fw.ID)
		must(t, err)
		must(t, s.DeleteFirmware(as("gina"), fw.ID))
		kept, err := s.GetFirmware(ctx, fw.ID)
		if err != nil || kept.Status != ota.FirmwareDeleted || kept.Version != "1.0" || kept.SHA256 != fw.SHA256 {
			t.Errorf("tombstone: %v %+v", err, kept)
		}
		wantCode(t, s.DeleteFirmware(ctx, fw.ID), ota.ECONFLICT)
	})
}
