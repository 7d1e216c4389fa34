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

// TestAMessageNeverMovesLastSeenBack: a message's time is written alone
// (without the device's online flag), and a late one older than the
// stored last_seen leaves it as it is.
func TestAMessageNeverMovesLastSeenBack(t *testing.T) {
	run(t, func(t *testing.T, s store.Store) {
		ctx := context.Background()
		createProduct(t, s, "a")
		ds := createDevices(t, s, newDevices("a", "d", 2))
		t0 := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
		at := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }
		seen := func(i, n int) ota.LastSeen { return ota.LastSeen{DeviceID: ds[i].ID, At: at(n)} }
		_, err := s.Apply(ctx, ota.ChangeSet{Presence: []ota.Presence{{DeviceID: ds[0].ID, Online: true, At: at(0)}}})
		must(t, err)
		steps := []ota.ChangeSet{
			{Seen: []ota.LastSeen{seen(0, 5), seen(1, 3)}},
			{Seen: []ota.LastSeen{seen(0, 4), seen(1, 6)}},
			{Seen: []ota.LastSeen{seen(1, 2)}},
		}
		for _, c := range steps {
			_, err := s.Apply(ctx, c)
			must(t, err)
		}
		for i, want := range []struct {
			seen   time.Time
			online bool
		}{{at(5), true}, {at(6), false}} {
			got, err := s.GetDevice(ctx, "a", ds[i].Key)
			must(t, err)
			if got.LastSeen == nil || !got.LastSeen.Equal(want.seen) || got.Online != want.online {
				t.Errorf("device %d: last seen %v, online %v; want %v, %v", i, got.LastSeen, got.Online, want.seen, want.online)
			}
		}
	})
}
