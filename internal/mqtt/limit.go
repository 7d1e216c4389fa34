package mqtt

import "sync"

// DefaultMaxConnectionsPerDevice bounds the connections one device may
// hold at once: room for a reconnection that takes over a session still
// closing, not for a reconnecting storm of half-open sockets or many
// clones sharing one secret, which would pin a goroutine and a file
// descriptor each.
const DefaultMaxConnectionsPerDevice = 4

// connLimit admits at most max connections per device. A connection takes
// its slot when CONNECT authenticates it and gives it back when its socket
// is served to its end, whatever path that end takes.
type connLimit struct {
	max  int
	mu   sync.Mutex
	open map[int64]int
}

func newConnLimit(max int) *connLimit {
	if max <= 0 {
		max = DefaultMaxConnectionsPerDevice
	}
	return &connLimit{max: max, open: make(map[int64]int)}
}

// take reserves a slot for device id and returns its release, or false
// when the device holds every slot. A takeover (a reconnection with the
// client id of a connection still open, which it closes) always gets one:
// a device must be able to replace a half-open connection.
func (l *connLimit) take(id int64, takeover bool) (func(), bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[id] >= l.max && !takeover {
		return nil, false
	}
	l.open[id]++
	var once sync.Once
	return func() { once.Do(func() { l.give(id) }) }, true
}

func (l *connLimit) give(id int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[id]--; l.open[id] <= 0 {
		delete(l.open, id)
	}
}
