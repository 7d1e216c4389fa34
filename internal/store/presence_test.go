package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/otter-ota/otter/internal/ota"
	"github.com/otter-ota/otter/internal/store"
)

// TestADisconnectOlderThanTheDevicesLastMessageIsIgnored: behind an
// external broker the will of an ended connection and the first message
// of the next one may be stored in either order; the device must end up
// online.
func TestADisconnectOlderThanTheDevicesLastMessageIsIgnored(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		createProduct(t, s, "a")
		d := createDevices(t, s, newDevices("a", "d", 1))[0]
		t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
		at := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
		online := func(p bool, n int) ota.Presence { return ota.Presence{DeviceID: d.ID, Online: p, At: at(n)} }
		seen := func(n int) ota.LastSeen { return ota.LastSeen{DeviceID: d.ID, At: at(n)} }
		steps := []struct {
			what   string
			change ota.ChangeSet
			want   bool
		}{
			{"connect", ota.ChangeSet{Presence: []ota.Presence{online(true, 0)}}, true},
			{"a message", ota.ChangeSet{Seen: []ota.LastSeen{seen(2)}}, true},
			{"a will older than the message", ota.ChangeSet{Presence: []ota.Presence{online(false, 1)}}, true},
			{"a will after it", ota.ChangeSet{Presence: []ota.Presence{online(false, 3)}}, false},
			{"a connect and an older will in one batch", ota.ChangeSet{Presence: []ota.Presence{online(true, 5), online(false, 4)}}, true},
			{"a message and an older will in one batch", ota.ChangeSet{Seen: []ota.LastSeen{seen(7)}, Presence: []ota.Presence{online(false, 6)}}, true},
			{"a disconnect after everything", ota.ChangeSet{Presence: []ota.Presence{online(false, 8)}}, false},
			{"a connect and a later disconnect in one batch", ota.ChangeSet{Presence: []ota.Presence{online(true, 9), online(false, 10)}}, false},
		}
		for _, st := range steps {
			_, err := s.Apply(ctx, st.change)
			must(t, err)
			got, err := s.GetDevice(ctx, "a", d.Key)
			must(t, err)
			if got.Online != st.want {
				t.Fatalf("after %s: online %v, want %v", st.what, got.Online, st.want)
			}
		}
		got, err := s.GetDevice(ctx, "a", d.Key)
		must(t, err)
		if got.LastSeen == nil || !got.LastSeen.Equal(at(10)) {
			t.Fatalf("last seen %v, want %v", got.LastSeen, at(10))
		}
	})
}
