package store_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
	"github.com/otter-ota/otter/internal/store/storetest"
)

var ignoreEventIDAt = cmpopts.IgnoreFields(ota.Event{}, "ID", "At")

func TestDeviceCreateGet(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		createProduct(t, s, "p")
		devs := []store.NewDevice{
			{Product: "p", Key: "a", SecretHash: hash("a"), Tags: map[string]string{"site": "paris", "floor": "2"},
				Versions: map[string]string{"default": "1.0.0", "modem": "3.1"}},
			{Product: "p", Key: "b", SecretHash: hash("b")},
		}
		created, err := s.CreateDevices(as("carol"), devs)
		must(t, err)
		want := []ota.Device{
			{Product: "p", Key: "a", Tags: map[string]string{"site": "paris", "floor": "2"},
				Versions: map[string]string{"default": "1.0.0", "modem": "3.1"}},
			{Product: "p", Key: "b", Tags: map[string]string{}, Versions: map[string]string{}},
		}
		if diff := cmp.Diff(want, created, cmpopts.IgnoreFields(ota.Device{}, "ID", "CreatedAt")); diff != "" {
			t.Errorf("CreateDevices (-want +got):\n%s", diff)
		}
		if created[0].ID == 0 || created[0].ID == created[1].ID || created[0].CreatedAt.IsZero() {
			t.Errorf("ids %d, %d and time %v not assigned", created[0].ID, created[1].ID, created[0].CreatedAt)
		}
		for _, d := range created {
			got, err := s.GetDevice(ctx, "p", d.Key)
			must(t, err)
			if diff := cmp.Diff(d, got); diff != "" {
				t.Errorf("GetDevice(%s) (-want +got):\n%s", d.Key, diff)
			}
		}
		events, _, err := s.ListEvents(ctx, store.EventFilter{Kind: ota.KindDevice}, store.Page{})
		must(t, err)
		wantEvents := []ota.Event{
			{Actor: "carol", Kind: ota.KindDevice, Action: "created", Product: "p", Device: "b"},
			{Actor: "carol", Kind: ota.KindDevice, Action: "created", Product: "p", Device: "a"},
		}
		if diff := cmp.Diff(wantEvents, events, ignoreEventIDAt,
			cmpopts.SortSlices(func(a, b ota.Event) bool { return a.Device > b.Device })); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		_, err = s.GetDevice(ctx, "p", "zz")
		wantCode(t, err, ota.ENOTFOUND)
	})
}

func TestDeviceCreateRefused(t *testing.T) {
	tests := []struct {
		name    string
		devs    []store.NewDevice
		code    string
		details []string
	}{
		{"stored already", append(newDevices("p", "new", 2), newDevices("p", "old", 3)[1:]...),
			ota.ECONFLICT, []string{"old-00001", "old-00002"}},
		{"twice in the list", append(newDevices("p", "x", 3), newDevices("p", "x", 2)...),
			ota.ECONFLICT, []string{"x-00000", "x-00001"}},
		{"unknown product", append(newDevices("p", "y", 2), newDevices("nope", "y", 1)...), ota.ENOTFOUND, nil},
		{"no secret", []store.NewDevice{{Product: "p", Key: "k"}}, ota.EINVALID, nil},
		{"bad key", []store.NewDevice{{Product: "p", Key: "a/b", SecretHash: hash("k")}}, ota.EINVALID, nil},
		{"empty tag name", []store.NewDevice{{Product: "p", Key: "k", SecretHash: hash("k"),
			Tags: map[string]string{"": "v"}}}, ota.EINVALID, nil},
		{"empty version", []store.NewDevice{{Product: "p", Key: "k", SecretHash: hash("k"),
			Versions: map[string]string{"default": ""}}}, ota.EINVALID, nil},
	}
	run(t, func(t *testing.T, s store.Store) {
		createProduct(t, s, "p")
		createDevices(t, s, newDevices("p", "old", 3))
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := s.CreateDevices(context.Background(), tt.devs)
				wantCode(t, err, tt.code)
				var e *ota.Error
				if tt.details != nil && (!errorsAs(err, &e) || !cmp.Equal(tt.details, e.Details)) {
					t.Errorf("details = %v, want %v", e, tt.details)
				}
				all, _, err := s.ListDevices(context.Background(), store.DeviceFilter{}, store.Page{})
				must(t, err)
				if len(all) != 3 {
					t.Errorf("%d devices stored after a refused create, want the 3 from before", len(all))
				}
			})
		}
	})
}

func TestDeviceListFilters(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		createProduct(t, s, "p")
		createProduct(t, s, "q")
		tags := func(kv ...string) map[string]string {
			m := map[string]string{}
			for i := 0; i < len(kv); i += 2 {
				m[kv[i]] = kv[i+1]
			}
			return m
		}
		createDevices(t, s, []store.NewDevice{
			{Product: "p", Key: "lab-1", SecretHash: hash("1"), Tags: tags("site", "paris", "ring", "beta"),
				Versions: tags("default", "1.0", "modem", "2.0")},
			{Product: "p", Key: "lab-2", SecretHash: hash("2"), Tags: tags("site", "paris", "ring", "prod"),
				Versions: tags("default", "1.1")},
			{Product: "p", Key: "Lab-3", SecretHash: hash("3"), Tags: tags("site", "lyon", "ring", "beta"),
				Versions: tags("default", "1.0")},
			{Product: "p", Key: "shop_1", SecretHash: hash("4")},
			{Product: "q", Key: "lab-1", SecretHash: hash("5"), Tags: tags("site", "paris"),
				Versions: tags("default", "1.0")},
		})
		yes, no := true, false
		tests := []struct {
			name string
			f    store.DeviceFilter
			want []string
		}{
			{"none", store.DeviceFilter{}, []string{"p/lab-1", "p/lab-2", "p/Lab-3", "p/shop_1", "q/lab-1"}},
			{"product", store.DeviceFilter{Product: "q"}, []string{"q/lab-1"}},
			{"one tag", store.DeviceFilter{Product: "p", Tags: tags("site", "paris")}, []string{"p/lab-1", "p/lab-2"}},
			{"every tag must match", store.DeviceFilter{Tags: tags("site", "paris", "ring", "beta")}, []string{"p/lab-1"}},
			{"tag value differs", store.DeviceFilter{Tags: tags("site", "rome")}, nil},
			{"module and version", store.DeviceFilter{Product: "p", Module: "default", Version: "1.0"},
				[]string{"p/lab-1", "p/Lab-3"}},
			{"version of the default module", store.DeviceFilter{Version: "1.1"}, []string{"p/lab-2"}},
			{"module alone", store.DeviceFilter{Module: "modem"}, []string{"p/lab-1"}},
			{"online", store.DeviceFilter{Online: &yes}, nil},
			{"offline", store.DeviceFilter{Product: "q", Online: &no}, []string{"q/lab-1"}},
			{"key prefix is case-sensitive", store.DeviceFilter{Product: "p", KeyPrefix: "lab"},
				[]string{"p/lab-1", "p/lab-2"}},
			{"key prefix has no wildcards", store.DeviceFilter{KeyPrefix: "shop%"}, nil},
			{"underscore is literal", store.DeviceFilter{KeyPrefix: "shop_"}, []string{"p/shop_1"}},
			{"all combined", store.DeviceFilter{Product: "p", Tags: tags("ring", "beta"), Module: "default",
				Version: "1.0", Online: &no, KeyPrefix: "L"}, []string{"p/Lab-3"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				devs, next, err := s.ListDevices(ctx, tt.f, store.Page{})
				must(t, err)
				var got []string
				for _, d := range devs {
					got = append(got, d.Product+"/"+d.Key)
				}
				if diff := cmp.Diff(tt.want, got); diff != "" || next != "" {
					t.Errorf("next = %q, devices (-want +got):\n%s", next, diff)
				}
			})
		}
	})
}

func TestDeviceListPaging(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		createProduct(t, s, "p")
		devs := newDevices("p", "d", 25)
		for i := range devs {
			devs[i].Tags = map[string]string{"n": fmt.Sprint(i % 2)}
		}
		created := createDevices(t, s, devs)
		all, pages := collect(t, 10, func(p store.Page) ([]ota.Device, string, error) {
			return s.ListDevices(ctx, store.DeviceFilter{Product: "p"}, p)
		})
		if diff := cmp.Diff(created, all); diff != "" || pages != 3 {
			t.Errorf("pages = %d, devices (-want +got):\n%s", pages, diff)
		}
		even, pages := collect(t, 5, func(p store.Page) ([]ota.Device, string, error) {
			return s.ListDevices(ctx, store.DeviceFilter{Tags: map[string]string{"n": "0"}}, p)
		})
		if len(even) != 13 || pages != 3 {
			t.Errorf("tag filter over pages: %d devices in %d pages, want 13 in 3", len(even), pages)
		}
		for _, bad := range []string{"!!!", "bm90LWEtbnVtYmVy", "LTU"} {
			_, _, err := s.ListDevices(ctx, store.DeviceFilter{}, store.Page{After: bad})
			wantCode(t, err, ota.EINVALID)
		}
		_, _, err := s.ListDevices(ctx, store.DeviceFilter{}, store.Page{Limit: -1})
		wantCode(t, err, ota.EINVALID)
	})
}

func TestDeviceChanges(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		createProduct(t, s, "p")
		dev := createDevices(t, s, []store.NewDevice{{Product: "p", Key: "k", SecretHash: hash("one"),
			Tags: map[string]string{"old": "x"}}})[0]

		got, err := s.SetDeviceTags(as("dave"), "p", "k", map[string]string{"site": "oslo", "ring": "1"})
		must(t, err)
		dev.Tags = map[string]string{"site": "oslo", "ring": "1"}
		if diff := cmp.Diff(dev, got); diff != "" {
			t.Errorf("SetDeviceTags (-want +got):\n%s", diff)
		}
		wantEvent := ota.Event{Actor: "dave", Kind: ota.KindDevice, Action: "tags_set", Product: "p", Device: "k",
			Data: map[string]string{"site": "oslo", "ring": "1"}}
		if diff := cmp.Diff(wantEvent, lastEvent(t, s), ignoreEventIDAt); diff != "" {
			t.Errorf("event (-want +got):\n%s", diff)
		}

		must(t, s.SetDeviceSecret(as("dave"), "p", "k", hash("two"), nil))
		creds, err := s.Credentials(ctx, "p", "k")
		must(t, err)
		if creds.DeviceID != dev.ID || !bytes.Equal(creds.SecretHash, hash("two")) {
			t.Errorf("Credentials = %+v, want id %d and the new hash", creds, dev.ID)
		}
		if e := lastEvent(t, s); e.Action != "secret_rotated" || e.Actor != "dave" || e.Device != "k" {
			t.Errorf("event = %+v, want secret_rotated by dave", e)
		}
		wantCode(t, s.SetDeviceSecret(ctx, "p", "k", nil, nil), ota.EINVALID)

		must(t, s.DeleteDevice(as("erin"), "p", "k"))
		if e := lastEvent(t, s); e.Action != "deleted" || e.Actor != "erin" || e.Device != "k" {
			t.Errorf("event = %+v, want deleted by erin", e)
		}
		_, err = s.GetDevice(ctx, "p", "k")
		wantCode(t, err, ota.ENOTFOUND)
	})
}

func TestDeviceNotFound(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		createProduct(t, s, "p")
		_, err := s.SetDeviceTags(ctx, "p", "ghost", nil)
		wantCode(t, err, ota.ENOTFOUND)
		wantCode(t, s.SetDeviceSecret(ctx, "p", "ghost", hash("x"), nil), ota.ENOTFOUND)
		wantCode(t, s.DeleteDevice(ctx, "p", "ghost"), ota.ENOTFOUND)
		_, err = s.Credentials(ctx, "p", "ghost")
		wantCode(t, err, ota.ENOTFOUND)
		_, err = s.GetDevice(ctx, "nope", "ghost")
		wantCode(t, err, ota.ENOTFOUND)
	})
}

func TestCreateTenThousandDevices(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 10,000 devices")
	}
	run(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		createProduct(t, s, "fleet")
		devs := newDevices("fleet", "unit", 10000)
		for i := range devs {
			devs[i].Tags = map[string]string{"batch": fmt.Sprint(i / 1000)}
			devs[i].Versions = map[string]string{"default": "1.0.0"}
		}
		created := createDevices(t, s, devs)
		all, pages := collect(t, 5000, func(p store.Page) ([]ota.Device, string, error) {
			return s.ListDevices(ctx, store.DeviceFilter{Product: "fleet"}, p)
		})
		if pages != 10 {
			t.Errorf("%d pages of at most %d, want 10", pages, store.MaxPageSize)
		}
		if diff := cmp.Diff(created, all); diff != "" {
			t.Errorf("listed devices differ from created ones (-want +got):\n%s", diff)
		}
		batch7, _, err := s.ListDevices(ctx, store.DeviceFilter{Tags: map[string]string{"batch": "7"}},
			store.Page{Limit: store.MaxPageSize})
		must(t, err)
		if len(batch7) != 1000 || batch7[0].Key != "unit-07000" {
			t.Errorf("batch 7: %d devices starting at %v", len(batch7), batch7[0].Key)
		}
		events, _, err := s.ListEvents(ctx, store.EventFilter{Product: "fleet", Kind: ota.KindDevice},
			store.Page{Limit: store.MaxPageSize})
		must(t, err)
		keys := make([]string, len(events))
		for i, e := range events {
			keys[i] = e.Device
		}
		if len(events) != 1000 || !slices.Contains(keys, "unit-09999") {
			t.Errorf("newest device events: %d, want 1000 including unit-09999", len(events))
		}
	})
}

// Sealed secrets are kept for the devices of EnOS products only: a device
// of another product keeps its hash alone, a product switched away from
// EnOS forgets them, and one switched to it has none until a rotation.
func TestSealedSecretsOnlyForEnOSProducts(t *testing.T) {
	runURL(t, func(t *testing.T, url string) {
		s, db := storetest.OpenURL(t, url), rawDB(t, url)
		ctx := context.Background()
		countSealed := func(t *testing.T, _ store.Store, product string) int {
			t.Helper()
			var n int
			must(t, db.QueryRowContext(ctx, `SELECT COUNT(*) FROM devices WHERE product = $1 AND secret_sealed IS NOT NULL`, product).Scan(&n))
			return n
		}
		enos := ota.Product{Key: "e", Protocol: ota.ProtocolEnOS}
		must(t, s.CreateProduct(ctx, &enos))
		createProduct(t, s, "o")
		createDevices(t, s, []store.NewDevice{
			{Product: "e", Key: "d1", SecretHash: hash("one"), SecretSealed: []byte("sealed-1")},
			{Product: "o", Key: "d2", SecretHash: hash("two"), SecretSealed: []byte("sealed-2")},
		})
		sealed := func(product, key string) []byte {
			t.Helper()
			c, err := s.Credentials(ctx, product, key)
			must(t, err)
			return c.SealedSecret
		}
		if got := sealed("e", "d1"); string(got) != "sealed-1" {
			t.Errorf("EnOS device's sealed secret = %q, want sealed-1", got)
		}
		if got := sealed("o", "d2"); got != nil {
			t.Errorf("otter device's sealed secret = %q, want none kept", got)
		}
		if n := countSealed(t, s, "o"); n != 0 {
			t.Errorf("%d sealed secrets stored for an otter product, want 0", n)
		}
		otter := ota.ProtocolOtter
		p, err := s.UpdateProduct(as("dave"), "e", store.ProductUpdate{Protocol: &otter})
		must(t, err)
		if p.Protocol != ota.ProtocolOtter {
			t.Errorf("protocol after the update = %q", p.Protocol)
		}
		if e := lastEvent(t, s); e.Action != "updated" || e.Data["protocol"] != "enos -> otter" {
			t.Errorf("event = %+v, want updated with protocol enos -> otter", e)
		}
		if n := countSealed(t, s, "e"); n != 0 {
			t.Errorf("%d sealed secrets left after the switch to otter, want 0", n)
		}
		enosP := ota.ProtocolEnOS
		_, err = s.UpdateProduct(ctx, "e", store.ProductUpdate{Protocol: &enosP})
		must(t, err)
		if got := sealed("e", "d1"); got != nil {
			t.Errorf("device created before the switch has sealed secret %q, want none until rotated", got)
		}
		must(t, s.SetDeviceSecret(ctx, "e", "d1", hash("three"), []byte("sealed-3")))
		if got := sealed("e", "d1"); string(got) != "sealed-3" {
			t.Errorf("sealed secret after rotation = %q, want sealed-3", got)
		}
		must(t, s.SetDeviceSecret(ctx, "o", "d2", hash("four"), []byte("sealed-4")))
		if n := countSealed(t, s, "o"); n != 0 {
			t.Errorf("rotation stored a sealed secret for an otter product")
		}
		bad := "mqtt"
		_, err = s.UpdateProduct(ctx, "e", store.ProductUpdate{Protocol: &bad})
		wantCode(t, err, ota.EINVALID)
		_, err = s.UpdateProduct(ctx, "ghost", store.ProductUpdate{Protocol: &enosP})
		wantCode(t, err, ota.ENOTFOUND)
	})
}
