package mqtt

import "sync"

// presence counts the connections of each device, so that a device with
// several connections (different client ids, or an old connection that a
// takeover is still closing) goes offline only when its last one ends.
//
// Calls to the engine about one device are made under that device's lock,
// in the order of the count changes they follow: a Disconnected for the
// last connection can never overtake the Connected of the next one.
type presence struct {
	mu   sync.Mutex
	devs map[int64]*devicePresence
}

type devicePresence struct {
	mu    sync.Mutex // held across engine calls for this device
	conns int        // counted connections; guarded by mu
	refs  int        // goroutines using this entry; guarded by presence.mu
}

func newPresence() *presence {
	return &presence{devs: make(map[int64]*devicePresence)}
}

// with runs f with the device's entry locked.
func (p *presence) with(id int64, f func(d *devicePresence)) {
	p.mu.Lock()
	d := p.devs[id]
	if d == nil {
		d = &devicePresence{}
		p.devs[id] = d
	}
	d.refs++
	p.mu.Unlock()

	d.mu.Lock()
	f(d)
	d.mu.Unlock()

	p.mu.Lock()
	d.refs--
	if d.refs == 0 && d.conns == 0 {
		delete(p.devs, id)
	}
	p.mu.Unlock()
}

// add counts a new connection of a device.
func (p *presence) add(id int64) {
	p.with(id, func(d *devicePresence) { d.conns++ })
}

// connected runs report (the engine's Connected) in order with the device's
// other reports.
func (p *presence) connected(id int64, report func()) {
	p.with(id, func(*devicePresence) { report() })
}

// remove uncounts a connection and runs report (the engine's Disconnected)
// when it was the device's last.
func (p *presence) remove(id int64, report func()) {
	p.with(id, func(d *devicePresence) {
		d.conns--
		if d.conns == 0 {
			report()
		}
	})
}

// count returns the number of counted connections of a device.
func (p *presence) count(id int64) int {
	n := 0
	p.with(id, func(d *devicePresence) { n = d.conns })
	return n
}
