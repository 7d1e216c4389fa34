package engine

import (
	"context"
	"time"

	"github.com/otter-ota/otter/internal/ota"
)

// seenMark is what the loop knows of a device's last_seen: the latest time
// written (the store's value is this or later: last_seen never moves back)
// and the latest message heard, which may not be written yet.
type seenMark struct {
	written, heard time.Time
}

// pending says whether a message newer than the stored last_seen is held.
func (m seenMark) pending() bool { return m.heard.After(m.written) }

// seen records a device message for last_seen: written with the batch
// unless the last write is within SeenEvery, in which case it is held
// until a later message, a disconnect or a tick writes it.
func (w *work) seen(device int64, at time.Time) {
	if m, ok := w.e.seen[device]; ok && at.Sub(m.written) < w.e.cfg.SeenEvery {
		if w.heard == nil {
			w.heard = make(map[int64]time.Time)
		}
		w.heard[device] = maxTime(w.heard[device], at)
		return
	}
	w.change.Seen = append(w.change.Seen, ota.LastSeen{DeviceID: device, At: at})
}

// heardPending writes the held time of the device's latest message with a
// connect or disconnect: the store ignores a disconnect older than the
// device's last message, so that message must be written for the rule to
// hold.
func (w *work) heardPending(device int64) {
	m := w.e.seen[device]
	heard := maxTime(m.heard, w.heard[device])
	if heard.After(m.written) {
		w.change.Seen = append(w.change.Seen, ota.LastSeen{DeviceID: device, At: heard})
	}
}

// noteSeen updates the loop's last_seen marks after a change was written.
func (e *Engine) noteSeen(c ota.ChangeSet, heard map[int64]time.Time) {
	for _, s := range c.Seen {
		e.markWritten(s.DeviceID, s.At)
	}
	for _, p := range c.Presence {
		e.markWritten(p.DeviceID, p.At)
	}
	for id, at := range heard {
		m := e.seen[id]
		if !m.written.IsZero() {
			m.heard = maxTime(m.heard, at)
			e.seen[id] = m
		}
	}
	for _, id := range c.DeleteDevices {
		delete(e.seen, id)
	}
}

func (e *Engine) markWritten(device int64, at time.Time) {
	m := e.seen[device]
	m.written, m.heard = maxTime(m.written, at), maxTime(m.heard, at)
	e.seen[device] = m
}

// flushSeen writes the held last_seen of devices whose last write is
// SeenEvery old, so a stored last_seen is never staler than about
// SeenEvery and a tick, and forgets devices with nothing held.
func (e *Engine) flushSeen(ctx context.Context) {
	defer e.pruneJobs()
	now := e.now()
	var c ota.ChangeSet
	for id, m := range e.seen {
		if now.Sub(m.written) < e.cfg.SeenEvery {
			continue
		}
		if !m.pending() {
			delete(e.seen, id)
			continue
		}
		c.Seen = append(c.Seen, ota.LastSeen{DeviceID: id, At: m.heard})
	}
	if len(c.Seen) == 0 {
		return
	}
	if _, err := e.st.Apply(ctx, c); err != nil {
		if ctx.Err() == nil {
			e.log.Error("last_seen not written; trying again at the next tick", "devices", len(c.Seen), "err", err)
		}
		return
	}
	e.noteSeen(c, nil)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
